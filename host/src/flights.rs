//! The policy the service's threads share, and the operations in flight on it.
//!
//! An operation holds the policy only to translate and to land (commit what its plan says); its LoxiLB
//! calls run with the policy free. A load balancer whose LoxiLB call is slow (retries, a node timing out)
//! then no longer holds up every other load balancer's operations, and LoxiLB's round trips overlap
//! (the policy held across them was the host's one serial section: 2,200–2,600 operations/s with a
//! CPU idle). Two rules keep that as safe as holding the policy throughout:
//! - whoever else takes the policy ([`Policy::lock`]: reconciliation, recovery, Octavia sync, a swap, a
//!   status pass) waits until no operation is in flight, so it sees LoxiLB and the mapping agree; the
//!   operations that come after it wait for it;
//! - two plans in flight never touch the same LoxiLB rule, probe or mapping entry: a plan that would is
//!   translated again once the other has landed (it may then read what the other committed, such as who
//!   owns a VIP and port). The apply lanes keep each load balancer's operations in order; this covers
//!   what two load balancers can share.

use std::collections::HashSet;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, LockResult, Mutex, MutexGuard, PoisonError, TryLockError, TryLockResult};

use crate::execute::{carry_out, Outcome, Planned};
use crate::loxilb::LoxiTransport;
use crate::runtime::bindings::loxilb_types::LoxilbCall;
use crate::runtime::bindings::mapping::MappingChange;
use crate::runtime::bindings::octavia::Operation;
use crate::runtime::bindings::policy_types::Plan;
use crate::runtime::instance::{CallError, Sandbox};

pub struct Policy {
    held: Mutex<Held>,
    changed: Condvar,
}

struct Held {
    sandbox: Sandbox,
    in_flight: usize,
    /// What the plans in flight touch (see [`touched_by`]).
    touched: HashSet<String>,
    /// Takers of [`Policy::lock`] waiting for the operations in flight to land.
    waiting: usize,
    /// Threads parked on `changed`: nobody is woken when none is.
    sleepers: usize,
}

/// The policy, held. Letting go of it wakes whoever waits for a change.
pub struct Guard<'a> {
    held: MutexGuard<'a, Held>,
    changed: &'a Condvar,
}

/// An operation's plan, its LoxiLB calls yet to make.
pub struct Flight<'a> {
    policy: &'a Policy,
    loxilb: Arc<dyn LoxiTransport>,
    plan: Option<Plan>,
    touched: Vec<String>,
    landed: bool,
}

pub enum TakeOff<'a> {
    /// `still_ours` turned false: nothing was translated.
    HandedOver,
    Flying(Flight<'a>),
    /// Refused, or the policy trapped: the answer, with the policy held and nothing in flight.
    Grounded(Guard<'a>, Result<Outcome, CallError>),
}

impl Policy {
    pub fn new(sandbox: Sandbox) -> Policy {
        Policy { held: Mutex::new(Held { sandbox, in_flight: 0, touched: HashSet::new(), waiting: 0, sleepers: 0 }), changed: Condvar::new() }
    }

    /// The policy with no operation in flight. Never poisoned: a panic while it was held (a bug) fails
    /// what panicked, and the rest of the host takes it as operations do (`take_off`); otherwise every
    /// later reconciliation, sync and swap would panic in turn while operations went on.
    pub fn lock(&self) -> LockResult<Guard<'_>> {
        Ok(self.quiet(self.held.lock().unwrap_or_else(PoisonError::into_inner)))
    }

    /// The policy as it is between two translations: operations may be in flight, their mapping changes
    /// not yet committed. Enough for what reads the committed mapping alone (validation).
    pub fn lock_beside_flights(&self) -> Guard<'_> {
        Guard { held: self.held.lock().unwrap_or_else(PoisonError::into_inner), changed: &self.changed }
    }

    /// The policy if no thread holds it now (operations may be in flight), for the health check.
    pub fn try_lock(&self) -> TryLockResult<Guard<'_>> {
        match self.held.try_lock() {
            Ok(held) => Ok(Guard { held, changed: &self.changed }),
            Err(TryLockError::WouldBlock) => Err(TryLockError::WouldBlock),
            Err(TryLockError::Poisoned(p)) => Err(TryLockError::Poisoned(PoisonError::new(Guard { held: p.into_inner(), changed: &self.changed }))),
        }
    }

    /// Translates `op` and, for a plan, puts it in flight.
    pub fn take_off(&self, op: &Operation, still_ours: &dyn Fn() -> bool) -> TakeOff<'_> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            while held.waiting > 0 {
                held = self.park(held);
            }
            if !still_ours() {
                return TakeOff::HandedOver;
            }
            let plan = match held.sandbox.plan(op) {
                Ok(Planned::Ready(plan)) => plan,
                Ok(Planned::Refused(outcome)) => return TakeOff::Grounded(self.quiet(held), Ok(outcome)),
                Err(trap) => return TakeOff::Grounded(self.quiet(held), Err(trap)),
            };
            let touched = touched_by(&plan);
            if touched.iter().any(|t| held.touched.contains(t)) {
                held = self.park(held);
                continue;
            }
            held.touched.extend(touched.iter().cloned());
            held.in_flight += 1;
            crate::metrics::OPERATIONS_IN_FLIGHT.inc();
            let loxilb = Arc::clone(&held.sandbox.wiring().loxilb);
            return TakeOff::Flying(Flight { policy: self, loxilb, plan: Some(plan), touched, landed: false });
        }
    }

    fn quiet<'a>(&'a self, mut held: MutexGuard<'a, Held>) -> Guard<'a> {
        held.waiting += 1;
        while held.in_flight > 0 {
            held = self.park(held);
        }
        held.waiting -= 1;
        Guard { held, changed: &self.changed }
    }

    fn park<'a>(&'a self, mut held: MutexGuard<'a, Held>) -> MutexGuard<'a, Held> {
        held.sleepers += 1;
        let mut held = self.changed.wait(held).unwrap_or_else(PoisonError::into_inner);
        held.sleepers -= 1;
        held
    }
}

impl<'a> Flight<'a> {
    /// Makes the plan's LoxiLB calls (the undo calls after a failed one), then lands: the mapping
    /// changes committed if every call succeeded. The policy is held again on return; whoever waits for
    /// the flight to land is woken when it is let go.
    pub fn fly(mut self) -> (Guard<'a>, Outcome) {
        let plan = self.plan.take().expect("a flight flies once");
        let carried = carry_out(self.loxilb.as_ref(), &plan);
        let mut guard = self.policy.lock_beside_flights();
        let outcome = guard.land(plan, carried);
        guard.land_flight(&self.touched);
        self.landed = true;
        (guard, outcome)
    }
}

impl Drop for Flight<'_> {
    /// A flight that never landed (a panic on the way) still lets the others by.
    fn drop(&mut self) {
        if !self.landed {
            self.policy.lock_beside_flights().land_flight(&self.touched);
        }
    }
}

impl Guard<'_> {
    fn land_flight(&mut self, touched: &[String]) {
        for t in touched {
            self.held.touched.remove(t);
        }
        self.held.in_flight -= 1;
        crate::metrics::OPERATIONS_IN_FLIGHT.dec();
    }
}

impl Deref for Guard<'_> {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.held.sandbox
    }
}

impl DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut Sandbox {
        &mut self.held.sandbox
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if self.held.sleepers > 0 {
            self.changed.notify_all();
        }
    }
}

/// What a plan touches, as names two plans share exactly when they would touch the same thing: each
/// rule by VIP, port and protocol (LoxiLB's key, whatever else differs), each probe by its name, each
/// mapping entry by Octavia id and by LoxiLB key.
fn touched_by(plan: &Plan) -> Vec<String> {
    let calls = plan.calls.iter().chain(&plan.undo).map(|call| match call {
        LoxilbCall::UpsertRule(r) => format!("rule {} {} {}", r.service.external_ip, r.service.port, r.service.protocol),
        LoxilbCall::DeleteRule(k) => format!("rule {} {} {}", k.external_ip, k.port, k.protocol),
        LoxilbCall::UpsertProbe(p) | LoxilbCall::DeleteProbe(p) => format!("probe {}", p.name),
    });
    let entries = plan.mapping.iter().flat_map(|change| match change {
        MappingChange::Put(e) => vec![format!("entry {}", e.octavia_id), format!("key {}", e.loxilb_key)],
        MappingChange::Remove(id) => vec![format!("entry {id}")],
    });
    calls.chain(entries).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use serde_json::{json, Value};

    use super::*;
    use crate::runtime::bindings::octavia::{ObjectKind, ProvisioningStatus};
    use crate::service::Service;

    /// A LoxiLB that says yes to everything, but holds every request naming `vip` until opened.
    struct Gate {
        vip: String,
        state: Mutex<GateState>,
        changed: Condvar,
    }

    #[derive(Default)]
    struct GateState {
        open: bool,
        holding: usize,
    }

    impl Gate {
        fn new(vip: &str) -> Arc<Gate> {
            Arc::new(Gate { vip: vip.into(), state: Mutex::default(), changed: Condvar::new() })
        }

        fn open(&self) {
            self.state.lock().unwrap().open = true;
            self.changed.notify_all();
        }

        fn wait_until_holding(&self) {
            let state = self.state.lock().unwrap();
            let (state, _) = self.changed.wait_timeout_while(state, Duration::from_secs(10), |s| s.holding == 0).unwrap();
            assert!(state.holding > 0, "no request reached LoxiLB");
        }
    }

    impl LoxiTransport for Gate {
        fn request(&self, method: &str, _path: &str, body: Option<&str>) -> Result<(u16, String), String> {
            if method == "GET" {
                return Ok((200, r#"{"lbAttr":[]}"#.into()));
            }
            if body.is_some_and(|b| b.contains(&self.vip)) {
                let mut state = self.state.lock().unwrap();
                state.holding += 1;
                self.changed.notify_all();
                while !state.open {
                    state = self.changed.wait(state).unwrap();
                }
                state.holding -= 1;
            }
            Ok((200, r#"{"result":"Success"}"#.into()))
        }
    }

    /// A LoxiLB client that panics on every change.
    struct Panicking;

    impl LoxiTransport for Panicking {
        fn request(&self, method: &str, _path: &str, _body: Option<&str>) -> Result<(u16, String), String> {
            assert_eq!(method, "GET", "a bug in the LoxiLB client");
            Ok((200, r#"{"lbAttr":[]}"#.into()))
        }
    }

    fn service(loxilb: Arc<dyn LoxiTransport>) -> Arc<Service> {
        let policy = crate::runtime::load(&crate::runtime::default_policy_path()).unwrap();
        let mapping = crate::app::load_mapping(Arc::new(crate::storage::MemoryStore::default())).unwrap();
        let wiring = crate::runtime::instance::Wiring { loxilb, mapping, remove_orphans: false, served: Default::default(), log_target: "test".into() };
        let settings = crate::runtime::bindings::policy_types::Settings { nat_mode: "fullnat".into(), bgp: false };
        let sandbox = Sandbox::new(policy, wiring, crate::runtime::instance::Limits::default(), settings).unwrap();
        Service::new(sandbox, None, Arc::new(crate::octavia::status::RecordingSink::default()), Duration::from_secs(1))
    }

    /// A load balancer with a TCP listener on `port` and one member: one rule to program.
    fn loadbalancer(n: u32, vip: &str, port: u16) -> Value {
        let (lb, listener, pool, member) = (format!("lb-{n}"), format!("listener-{n}"), format!("pool-{n}"), format!("member-{n}"));
        let pool = json!({"pool_id": pool, "loadbalancer_id": lb, "listener_id": listener, "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN", "admin_state_up": true,
                          "members": [{"member_id": member, "pool_id": pool, "address": format!("10.1.0.{n}"), "protocol_port": 8080, "weight": 1, "admin_state_up": true}]});
        let listener = json!({"listener_id": listener, "loadbalancer_id": lb, "protocol": "TCP", "protocol_port": port, "admin_state_up": true, "connection_limit": -1,
                              "default_pool_id": pool["pool_id"], "default_pool": pool});
        json!({"loadbalancer_id": lb, "loadbalancer": {"loadbalancer_id": lb, "vip_address": vip, "admin_state_up": true, "listeners": [listener], "pools": []}})
    }

    fn lb_status(statuses: &[crate::runtime::bindings::octavia::ObjectStatus], lb: &str) -> Option<ProvisioningStatus> {
        statuses.iter().find(|s| s.kind == ObjectKind::Loadbalancer && s.id == lb).and_then(|s| s.provisioning)
    }

    /// Applies a create on a thread of its own; its statuses arrive on the receiver.
    fn create(service: &Arc<Service>, args: Value) -> mpsc::Receiver<Vec<crate::runtime::bindings::octavia::ObjectStatus>> {
        let (tx, rx) = mpsc::channel();
        let service = Arc::clone(service);
        std::thread::spawn(move || tx.send(service.apply("loadbalancer_create", &args)).unwrap());
        rx
    }

    /// A service whose LoxiLB holds back everything for 10.0.0.1, with load balancer 1's create (on that
    /// VIP, port 80) held there.
    fn first_in_flight() -> (Arc<Gate>, Arc<Service>, mpsc::Receiver<Vec<crate::runtime::bindings::octavia::ObjectStatus>>) {
        let gate = Gate::new("10.0.0.1");
        let service = service(gate.clone());
        let first = create(&service, loadbalancer(1, "10.0.0.1", 80));
        gate.wait_until_holding();
        (gate, service, first)
    }

    #[test]
    fn a_load_balancer_waiting_on_loxilb_holds_up_no_other_load_balancer() {
        let (gate, service, stuck) = first_in_flight();
        assert!(crate::metrics::OPERATIONS_IN_FLIGHT.get() >= 1, "the operation held at LoxiLB is not counted in flight");
        let other = create(&service, loadbalancer(2, "10.0.0.2", 80)).recv_timeout(Duration::from_secs(5));
        let held_up = other.is_err();
        gate.open();
        assert!(!held_up, "load balancer 2 waited for load balancer 1's LoxiLB call");
        assert_eq!(lb_status(&other.unwrap(), "lb-2"), Some(ProvisioningStatus::Active));
        assert_eq!(lb_status(&stuck.recv_timeout(Duration::from_secs(5)).unwrap(), "lb-1"), Some(ProvisioningStatus::Active));
    }

    #[test]
    fn whoever_takes_the_policy_waits_for_the_operations_in_flight_to_land() {
        let (gate, service, stuck) = first_in_flight();
        let (tx, taken) = mpsc::channel();
        let taker = Arc::clone(&service);
        std::thread::spawn(move || {
            let sandbox = taker.sandbox.lock().unwrap();
            tx.send(sandbox.mapping().get("lb-1").is_some()).unwrap();
        });
        let early = taken.recv_timeout(Duration::from_millis(300));
        gate.open();
        assert!(early.is_err(), "the policy was taken while an operation's LoxiLB calls were in flight");
        assert!(taken.recv_timeout(Duration::from_secs(5)).unwrap(), "taken after the operation landed, it did not see the mapping it committed");
        stuck.recv_timeout(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn a_plan_touching_what_a_flight_touches_is_made_again_after_it_lands() {
        let (gate, service, first) = first_in_flight();
        // The same VIP and port: translated while the first is in flight, it would program the same rule.
        let second = create(&service, loadbalancer(2, "10.0.0.1", 80));
        let early = second.recv_timeout(Duration::from_millis(300));
        gate.open();
        assert!(early.is_err(), "a plan for the same rule flew beside the first");
        assert_eq!(lb_status(&first.recv_timeout(Duration::from_secs(5)).unwrap(), "lb-1"), Some(ProvisioningStatus::Active));
        let second = second.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(lb_status(&second, "lb-2"), Some(ProvisioningStatus::Error), "made again after the first landed, it must see the VIP taken: {second:?}");
        let sandbox = service.sandbox.lock().unwrap();
        assert!(sandbox.mapping().get("listener-1").is_some() && sandbox.mapping().get("lb-2").is_none(), "the rule is not the first's alone");
    }

    #[test]
    fn a_flight_that_panicked_does_not_keep_the_policy_from_others() {
        let service = service(Arc::new(Panicking));
        let panicked = std::thread::spawn({
            let service = Arc::clone(&service);
            move || service.apply("loadbalancer_create", &loadbalancer(1, "10.0.0.1", 80))
        })
        .join();
        assert!(panicked.is_err(), "the LoxiLB client was expected to panic");
        let (tx, taken) = mpsc::channel();
        std::thread::spawn(move || {
            let unpoisoned = service.sandbox.lock().is_ok();
            tx.send(unpoisoned).unwrap();
        });
        let taken = taken.recv_timeout(Duration::from_secs(5));
        assert!(taken.is_ok(), "the policy still waits for the flight that panicked to land");
        assert!(taken.unwrap(), "the panic outside the policy poisoned it");
    }
}
