//! The component's exports: thin glue from the WIT functions to the policy, which lives in one
//! instance-wide cell (a component instance is single-threaded). Policy crates built from this library
//! call `export_policy!` with their own name and rendering profile.

use std::cell::RefCell;

use crate::caps::Wasm;
use crate::execute::Policy;
use crate::loxilb_types::LbRule;
use crate::mapping::{MappingChange, MappingEntry, ResourceType as WitType};
use crate::octavia::ObjectStatus;
use crate::octavia::Operation;
use crate::policy::Guest;
use crate::policy_types::{ListenerStats, Outcome, Plan, PolicyError, PolicyInfo, ReconcileReport, RecoveryMode, RecoveryReport, Settings};
use crate::state::{Change, Entry, ResourceType};
use crate::translate::{nat_mode_from_name, Config};

thread_local! {
    static POLICY: RefCell<Policy> = RefCell::new(Policy::new(Config::default()));
}

/// What distinguishes one policy built from this library from another.
pub trait Definition {
    fn info() -> PolicyInfo;
    fn profile() -> crate::translate::Profile;
}

/// The exports, for any `Definition`.
pub struct Component<D>(std::marker::PhantomData<D>);

fn wit_type(t: ResourceType) -> WitType {
    match t {
        ResourceType::Loadbalancer => WitType::Loadbalancer,
        ResourceType::Listener => WitType::Listener,
        ResourceType::Pool => WitType::Pool,
        ResourceType::Member => WitType::Member,
        ResourceType::Healthmonitor => WitType::Healthmonitor,
    }
}

fn into_mapping_entry(id: String, e: Entry) -> MappingEntry {
    MappingEntry {
        resource_type: wit_type(e.resource_type()),
        octavia_id: id,
        loxilb_key: e.key,
        external_ip: e.external_ip,
        port: e.port,
        protocol: e.protocol,
        created_at: e.created_at,
    }
}

pub fn mapping_entry(id: &str, e: &Entry) -> MappingEntry {
    MappingEntry {
        octavia_id: id.to_string(),
        loxilb_key: e.key.clone(),
        resource_type: wit_type(e.resource_type()),
        external_ip: e.external_ip.clone(),
        port: e.port,
        protocol: e.protocol.clone(),
        created_at: e.created_at.clone(),
    }
}

impl<D: Definition> Guest for Component<D> {
    fn info() -> PolicyInfo {
        D::info()
    }

    fn init(settings: Settings) -> Result<RecoveryReport, PolicyError> {
        // A panic aborts the instance (the host re-instantiates it); its message would be lost with it.
        std::panic::set_hook(Box::new(|info| crate::caps::Caps::log(&mut Wasm, crate::caps::Level::Error, &format!("policy panicked: {info}"))));
        let nat_mode = nat_mode_from_name(&settings.nat_mode).map_err(PolicyError::Invalid)?;
        POLICY.with_borrow_mut(|p| {
            p.config = Config { nat_mode, remove_orphans: settings.remove_orphans, profile: D::profile() };
            p.load(&mut Wasm)
        })
    }

    fn validate(op: Operation) -> Result<(), PolicyError> {
        POLICY.with_borrow(|p| crate::plan::validate(&p.state, &op, &p.config))
    }

    fn translate(op: Operation) -> Result<Plan, PolicyError> {
        POLICY.with_borrow(|p| {
            let plan = p.plan(&mut Wasm, &op)?;
            Ok(Plan {
                calls: plan.calls,
                mapping: plan
                    .changes
                    .into_iter()
                    .map(|c| match c {
                        Change::Put { id, entry } => MappingChange::Put(into_mapping_entry(id, entry)),
                        Change::Remove { id } => MappingChange::Remove(id),
                    })
                    .collect(),
                statuses: plan.statuses,
                failure_statuses: plan.failure_statuses,
            })
        })
    }

    fn handle(op: Operation) -> Outcome {
        POLICY.with_borrow_mut(|p| {
            let handled = p.handle(&mut Wasm, &op);
            Outcome { statuses: handled.statuses, error: handled.error, calls_made: handled.calls_made }
        })
    }

    fn recover(mode: RecoveryMode) -> Result<RecoveryReport, PolicyError> {
        POLICY.with_borrow_mut(|p| match mode {
            RecoveryMode::Storage => p.load(&mut Wasm),
            RecoveryMode::Loxilb => p.recover_from_loxilb(&mut Wasm),
            RecoveryMode::Hybrid => {
                let loaded = p.load(&mut Wasm)?;
                let mut report = p.recover_from_loxilb(&mut Wasm)?;
                report.loaded = loaded.loaded;
                Ok(report)
            }
        })
    }

    fn reconcile() -> Result<ReconcileReport, PolicyError> {
        POLICY.with_borrow_mut(|p| p.reconcile(&mut Wasm))
    }

    fn health() -> Result<Vec<ObjectStatus>, PolicyError> {
        POLICY.with_borrow(|p| p.health(&mut Wasm))
    }

    fn statistics() -> Result<Vec<ListenerStats>, PolicyError> {
        POLICY.with_borrow(|p| p.statistics(&mut Wasm))
    }

    fn desired_rules() -> Vec<LbRule> {
        POLICY.with_borrow(|p| p.desired().into_iter().filter_map(|(_, r)| r.map(|r| r.rule)).collect())
    }

    fn mappings() -> Vec<MappingEntry> {
        POLICY.with_borrow(|p| {
            let mut out: Vec<MappingEntry> = p.state.iter().map(|(id, e)| mapping_entry(id, e)).collect();
            out.sort_by(|a, b| a.octavia_id.cmp(&b.octavia_id));
            out
        })
    }
}

/// Exports a policy: `export_policy!(MyDefinition);` in a `cdylib` crate built for wasm32.
#[macro_export]
macro_rules! export_policy {
    ($definition:ty) => {
        type ExportedPolicy = $crate::component::Component<$definition>;
        $crate::bindings::export!(ExportedPolicy with_types_in $crate::bindings);
    };
}

/// Inside `impl Guest for MyPolicy`, implements the named exports by calling another policy's, for a
/// policy (or test fixture) that changes only a few: `delegate_exports!(Component<L4Fullnat>: init, mappings);`.
#[macro_export]
macro_rules! delegate_exports {
    ($to:ty: $($export:ident),+ $(,)?) => {
        $($crate::delegate_exports!(@one $to, $export);)+
    };
    (@one $to:ty, info) => {
        fn info() -> $crate::policy_types::PolicyInfo {
            <$to as $crate::policy::Guest>::info()
        }
    };
    (@one $to:ty, init) => {
        fn init(settings: $crate::policy_types::Settings) -> Result<$crate::policy_types::RecoveryReport, $crate::policy_types::PolicyError> {
            <$to as $crate::policy::Guest>::init(settings)
        }
    };
    (@one $to:ty, validate) => {
        fn validate(op: $crate::octavia::Operation) -> Result<(), $crate::policy_types::PolicyError> {
            <$to as $crate::policy::Guest>::validate(op)
        }
    };
    (@one $to:ty, translate) => {
        fn translate(op: $crate::octavia::Operation) -> Result<$crate::policy_types::Plan, $crate::policy_types::PolicyError> {
            <$to as $crate::policy::Guest>::translate(op)
        }
    };
    (@one $to:ty, handle) => {
        fn handle(op: $crate::octavia::Operation) -> $crate::policy_types::Outcome {
            <$to as $crate::policy::Guest>::handle(op)
        }
    };
    (@one $to:ty, recover) => {
        fn recover(mode: $crate::policy_types::RecoveryMode) -> Result<$crate::policy_types::RecoveryReport, $crate::policy_types::PolicyError> {
            <$to as $crate::policy::Guest>::recover(mode)
        }
    };
    (@one $to:ty, reconcile) => {
        fn reconcile() -> Result<$crate::policy_types::ReconcileReport, $crate::policy_types::PolicyError> {
            <$to as $crate::policy::Guest>::reconcile()
        }
    };
    (@one $to:ty, health) => {
        fn health() -> Result<Vec<$crate::octavia::ObjectStatus>, $crate::policy_types::PolicyError> {
            <$to as $crate::policy::Guest>::health()
        }
    };
    (@one $to:ty, statistics) => {
        fn statistics() -> Result<Vec<$crate::policy_types::ListenerStats>, $crate::policy_types::PolicyError> {
            <$to as $crate::policy::Guest>::statistics()
        }
    };
    (@one $to:ty, desired_rules) => {
        fn desired_rules() -> Vec<$crate::loxilb_types::LbRule> {
            <$to as $crate::policy::Guest>::desired_rules()
        }
    };
    (@one $to:ty, mappings) => {
        fn mappings() -> Vec<$crate::mapping::MappingEntry> {
            <$to as $crate::policy::Guest>::mappings()
        }
    };
}

/// The default policy: L4 rules in the configured NAT mode.
pub struct L4Fullnat;

impl Definition for L4Fullnat {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: crate::POLICY_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "L4 rules (TCP, UDP, SCTP, HTTPS pass-through) in the configured NAT mode; L7 refused".into(),
        }
    }
    fn profile() -> crate::translate::Profile {
        crate::translate::Profile::default()
    }
}
