//! Which load balancers this host acts for on its own, outside the operations it is given: the
//! monitor's repairs, reconciliation (at the start, when LoxiLB comes back, after a swap), the sync from
//! Octavia, operating statuses and statistics, and the reprogramming of load balancers that failed.
//!
//! Over the Unix socket a host is alone with its LoxiLB and acts for every load balancer it maps. Over
//! AMQP several hosts may share one LoxiLB, each with a mapping of its own, and RabbitMQ's
//! single-active-consumer gives each shard queue to one of them: a host's mapping is current only for
//! the shards it consumes. Its mapping of another shard's load balancers is as old as its last operation
//! on them (it served them before a failover, or took the shard over once), and acting on it brings back
//! what the serving host deleted since. So a host acts for a load balancer only while it is the active
//! consumer of the load balancer's shard, and once it has read that load balancer back from Octavia since
//! it became so.
//!
//! RabbitMQ does not tell an AMQP 0-9-1 consumer that it became the active one. Every host publishes a
//! probe to every shard queue each [`PROBE_EVERY`]; only the active consumer gets deliveries, so a host
//! that got one lately, or holds an operation, is the active consumer.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How often each host publishes a probe to each shard queue.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// A shard without a delivery for this long, and no operation in hand, is no longer taken as this
/// host's: its connection may have died unnoticed and the broker given the shard to another host. The
/// active consumer gets every host's probe, so a few probe periods cover a busy broker.
pub const QUIET_LIMIT: Duration = Duration::from_secs(5);

/// The load balancers this host acts for.
#[derive(Clone, Default)]
pub enum Served {
    /// Every load balancer it maps (the Unix socket: one host per LoxiLB).
    #[default]
    Everything,
    /// Those of the shards it is the active consumer of, once read back from Octavia (AMQP).
    Shards(Arc<Shards>),
}

impl Served {
    pub fn everything(&self) -> bool {
        matches!(self, Served::Everything)
    }

    pub fn serves(&self, lb_id: &str) -> bool {
        match self {
            Served::Everything => true,
            Served::Shards(shards) => shards.serves(lb_id),
        }
    }

    /// Whether the host acts for the load balancer a mapped object (`id`) belongs to; an object the
    /// mapping does not hold under a load balancer, only when it acts for every one.
    pub fn covers(&self, mapping: &crate::mapping::Mapping, id: &str) -> bool {
        self.everything() || mapping.loadbalancer_of(id).is_some_and(|lb| self.serves(&lb))
    }

    pub fn shards(&self) -> Option<&Arc<Shards>> {
        match self {
            Served::Everything => None,
            Served::Shards(shards) => Some(shards),
        }
    }
}

/// The cast shard of a load balancer, as the provider computes it (`transport.shard`): the first 32
/// bits of the SHA-256 of its id, modulo the number of shards.
pub fn shard_of(lb_id: &str, shards: u32) -> usize {
    let digest = Sha256::digest(lb_id.as_bytes());
    (u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % shards.max(1)) as usize
}

/// What this host knows of its shard queues.
pub struct Shards {
    shards: Mutex<Vec<Shard>>,
    /// Bumped each time a shard becomes this host's: the monitor then reads its load balancers back.
    activations: AtomicU64,
    /// Whether a shard taken over first adopts what LoxiLB holds and the mapping lacks (`recovery_mode`
    /// other than `storage`): load balancers another host created while it served the shard.
    recovers_from_loxilb: bool,
}

#[derive(Default)]
struct Shard {
    last_delivery: Option<Instant>,
    in_hand: bool,
    /// Bumped each time the shard becomes this host's: an adoption read under an earlier one is stale.
    epoch: u64,
    /// Load balancers read back from Octavia during this epoch.
    adopted: HashSet<String>,
}

impl Shard {
    fn live(&self, now: Instant) -> bool {
        self.in_hand || self.last_delivery.is_some_and(|at| now.saturating_duration_since(at) < QUIET_LIMIT)
    }
}

impl Shards {
    pub fn new(count: u32) -> Shards {
        Shards { shards: Mutex::new((0..count.max(1)).map(|_| Shard::default()).collect()), activations: AtomicU64::new(0), recovers_from_loxilb: true }
    }

    /// Shards whose takeover reads back only the load balancers the mapping holds (`recovery_mode =
    /// storage`: LoxiLB's rules are never adopted).
    pub fn without_recovery(mut self) -> Shards {
        self.recovers_from_loxilb = false;
        self
    }

    pub fn recovers_from_loxilb(&self) -> bool {
        self.recovers_from_loxilb
    }

    pub fn count(&self) -> u32 {
        self.shards.lock().unwrap().len() as u32
    }

    fn index(&self, lb_id: &str) -> usize {
        shard_of(lb_id, self.count())
    }

    /// A delivery on shard `i` (an operation or a probe): only its active consumer gets any. A shard that
    /// was not live becomes this host's anew, with nothing read back yet.
    pub fn delivered(&self, i: usize) {
        let now = Instant::now();
        let mut shards = self.shards.lock().unwrap();
        let Some(shard) = shards.get_mut(i) else { return };
        if !shard.live(now) {
            shard.epoch += 1;
            shard.adopted.clear();
            self.activations.fetch_add(1, Ordering::SeqCst);
        }
        shard.last_delivery = Some(now);
    }

    /// Whether an operation of shard `i` is in hand (delivered and not acknowledged yet).
    pub fn holding(&self, i: usize, in_hand: bool) {
        let mut shards = self.shards.lock().unwrap();
        if let Some(shard) = shards.get_mut(i) {
            shard.in_hand = in_hand;
            // The quiet time counts from the operation's end, not its delivery.
            if !in_hand {
                shard.last_delivery = Some(Instant::now());
            }
        }
    }

    /// The session is over: no shard is this host's until deliveries come again.
    pub fn forget(&self) {
        for shard in self.shards.lock().unwrap().iter_mut() {
            shard.last_delivery = None;
            shard.in_hand = false;
            shard.adopted.clear();
        }
    }

    pub fn activations(&self) -> u64 {
        self.activations.load(Ordering::SeqCst)
    }

    /// Whether this host is the active consumer of the load balancer's shard.
    pub fn live(&self, lb_id: &str) -> bool {
        let i = self.index(lb_id);
        self.shards.lock().unwrap()[i].live(Instant::now())
    }

    /// The load balancer's shard's epoch, if this host is its active consumer: taken before a read
    /// back from Octavia, and handed to [`Shards::adopted`] after it.
    pub fn epoch(&self, lb_id: &str) -> Option<u64> {
        let i = self.index(lb_id);
        let shards = self.shards.lock().unwrap();
        let shard = &shards[i];
        shard.live(Instant::now()).then_some(shard.epoch)
    }

    /// The load balancer was read back from Octavia as of `epoch`; nothing is recorded if its shard
    /// changed hands since.
    pub fn adopted(&self, lb_id: &str, epoch: u64) {
        let i = self.index(lb_id);
        let mut shards = self.shards.lock().unwrap();
        let shard = &mut shards[i];
        if shard.epoch == epoch && shard.live(Instant::now()) {
            shard.adopted.insert(lb_id.to_string());
        }
    }

    /// Whether this host acts for the load balancer: the active consumer of its shard, having read it
    /// back from Octavia since it became so.
    pub fn serves(&self, lb_id: &str) -> bool {
        let i = self.index(lb_id);
        let shards = self.shards.lock().unwrap();
        shards[i].live(Instant::now()) && shards[i].adopted.contains(lb_id)
    }

    /// Of `lb_ids`, those of live shards not read back yet during this epoch.
    pub fn to_adopt(&self, lb_ids: Vec<String>) -> Vec<String> {
        let count = self.count();
        let now = Instant::now();
        let shards = self.shards.lock().unwrap();
        lb_ids
            .into_iter()
            .filter(|id| {
                let shard = &shards[shard_of(id, count)];
                shard.live(now) && !shard.adopted.contains(id)
            })
            .collect()
    }

    #[cfg(test)]
    fn age(&self, i: usize, by: Duration) {
        let mut shards = self.shards.lock().unwrap();
        if let Some(at) = shards[i].last_delivery.as_mut() {
            *at = at.checked_sub(by).expect("an instant that far back");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_the_providers() {
        // provider/tests/test_amqp.py: this id is shard 6 of 8 (sha256 hex, first 8 digits, mod 8).
        assert_eq!(shard_of("3f2b4a9e-5c1d-4e8f-9a7b-2c6d0e1f4a5b", 8), 6);
        assert_eq!(shard_of("anything", 1), 0);
    }

    fn lb_of_shard(shards: &Shards, i: usize) -> String {
        (0..).map(|n| format!("lb-{n}")).find(|id| shard_of(id, shards.count()) == i).unwrap()
    }

    #[test]
    fn a_load_balancer_is_served_only_by_the_active_consumer_once_read_back() {
        let shards = Shards::new(4);
        let lb = lb_of_shard(&shards, 2);
        assert!(!shards.live(&lb) && !shards.serves(&lb), "nothing is delivered yet");
        assert_eq!(shards.epoch(&lb), None);
        shards.delivered(2);
        assert_eq!(shards.activations(), 1);
        let epoch = shards.epoch(&lb).expect("live");
        assert!(!shards.serves(&lb), "not read back from Octavia yet");
        assert_eq!(shards.to_adopt(vec![lb.clone(), lb_of_shard(&shards, 1)]), vec![lb.clone()]);
        shards.adopted(&lb, epoch);
        assert!(shards.serves(&lb));
        assert!(shards.to_adopt(vec![lb.clone()]).is_empty());
        shards.delivered(2);
        assert_eq!(shards.activations(), 1, "a live shard's deliveries are no new activation");
        assert!(shards.serves(&lb));
    }

    #[test]
    fn a_quiet_shard_is_given_up_and_read_back_anew_when_deliveries_resume() {
        let shards = Shards::new(4);
        let lb = lb_of_shard(&shards, 3);
        shards.delivered(3);
        let first = shards.epoch(&lb).unwrap();
        shards.adopted(&lb, first);
        shards.age(3, QUIET_LIMIT);
        assert!(!shards.serves(&lb), "the broker may have given the shard to another host");
        shards.delivered(3);
        assert_eq!(shards.activations(), 2);
        assert!(!shards.serves(&lb), "another host may have changed it meanwhile");
        shards.adopted(&lb, first);
        assert!(!shards.serves(&lb), "a read under the earlier epoch is stale");
        shards.adopted(&lb, shards.epoch(&lb).unwrap());
        assert!(shards.serves(&lb));
    }

    #[test]
    fn an_operation_in_hand_keeps_its_shard_live_however_long_it_takes() {
        let shards = Shards::new(2);
        let lb = lb_of_shard(&shards, 0);
        shards.delivered(0);
        shards.holding(0, true);
        shards.adopted(&lb, shards.epoch(&lb).unwrap());
        shards.age(0, QUIET_LIMIT * 2);
        assert!(shards.serves(&lb), "prefetch 1: no probe comes while an operation is in hand");
        shards.holding(0, false);
        assert!(shards.serves(&lb), "quiet counts from the operation's end");
        shards.forget();
        assert!(!shards.live(&lb) && !shards.serves(&lb), "a lost session serves nothing");
    }
}
