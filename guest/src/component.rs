//! The component's exports: thin glue from the WIT functions to the policy's plain Rust, over the host's
//! mapping view. Nothing is kept between calls but the settings and what the view read (`state::Kept`,
//! checked against the host's revisions): the mapping is the host's.

use std::cell::RefCell;

use crate::loxilb_types::{LbRule, ObservedRule};
use crate::mapping::MappingChange;
use crate::octavia::{ObjectStatus, Operation};
use crate::policy::Guest;
use crate::policy_types::{DesiredRule, LegacyEntry, ListenerStats, Migration, Plan, PolicyError, PolicyInfo, Recovery, Refusal, Settings};
use crate::state::{Change, Kept, State};
use crate::translate::{nat_mode_from_name, Config, Profile};
use loxilb_policy_sdk::view::{log, now_ms, HostMapping, Level};

thread_local! {
    static CONFIG: RefCell<Config> = RefCell::new(Config::default());
    /// What this instance read from the host's mapping, for the next calls.
    static KEPT: RefCell<Kept> = RefCell::new(Kept::default());
}

/// What distinguishes one policy built from this library from another.
pub trait Definition {
    fn info() -> PolicyInfo;
    fn profile() -> Profile;
}

/// The exports, for any `Definition`.
pub struct Component<D>(std::marker::PhantomData<D>);

pub fn wit_change(change: Change) -> MappingChange {
    match change {
        Change::Put(entry) => MappingChange::Put(entry.into_wit()),
        Change::Remove { id } => MappingChange::Remove(id),
    }
}

fn with_state<R>(f: impl FnOnce(&State, &Config) -> R) -> R {
    KEPT.with_borrow_mut(|kept| {
        let state = State::keeping(&HostMapping, kept);
        CONFIG.with_borrow(|config| f(&state, config))
    })
}

impl<D: Definition> Guest for Component<D> {
    fn info() -> PolicyInfo {
        D::info()
    }

    fn configure(settings: Settings) -> Result<(), PolicyError> {
        // A panic aborts the instance (the host re-instantiates it); its message would be lost with it.
        std::panic::set_hook(Box::new(|info| log(Level::Error, &format!("policy panicked: {info}"))));
        let nat_mode = nat_mode_from_name(&settings.nat_mode).map_err(PolicyError::Invalid)?;
        CONFIG.with_borrow_mut(|c| *c = Config { nat_mode, bgp: settings.bgp, profile: D::profile() });
        Ok(())
    }

    fn translate(op: Operation) -> Result<Plan, Refusal> {
        with_state(|state, config| match crate::decide::plan_or_refuse(state, &op, config, now_ms()) {
            Ok(plan) => Ok(Plan {
                undo: plan.undo,
                calls: plan.calls,
                mapping: plan.changes.into_iter().map(wit_change).collect(),
                statuses: plan.statuses,
                failure_statuses: plan.failure_statuses,
            }),
            Err(refused) => Err(Refusal { error: refused.error, statuses: refused.statuses }),
        })
    }

    fn desired_rules() -> Vec<DesiredRule> {
        with_state(|state, config| {
            crate::recovery::desired(state, config)
                .into_iter()
                .filter_map(|(owner, rendered)| {
                    let rendered = rendered?;
                    Some(DesiredRule { owner, rule: rendered.rule, probes: rendered.probes })
                })
                .collect()
        })
    }

    fn recover(observed: Vec<LbRule>) -> Recovery {
        with_state(|state, _| {
            let found = crate::recovery::recover(state, &observed, &crate::decide::rfc3339(now_ms()));
            Recovery {
                mapping: found.changes.into_iter().map(wit_change).collect(),
                recovered: found.recovered,
                deterministic: found.deterministic,
                conflicts: found.conflicts,
            }
        })
    }

    fn migrate(legacy: Vec<LegacyEntry>) -> Migration {
        let (changes, dropped) = crate::migrate::v1_0(&legacy);
        Migration { mapping: changes.into_iter().map(wit_change).collect(), dropped }
    }

    fn owns_rule(name: String) -> bool {
        crate::keys::is_provider_rule_name(&name)
    }

    fn operating_statuses(observed: Vec<ObservedRule>) -> Vec<ObjectStatus> {
        with_state(|state, _| crate::health::operating_statuses(state, &observed))
    }

    fn statistics(observed: Vec<ObservedRule>) -> Vec<ListenerStats> {
        with_state(|state, _| crate::health::statistics(state, &observed))
    }
}

/// Exports a policy built from this library: `export_policy!(MyDefinition);` in a `cdylib` crate built
/// for wasm32.
#[macro_export]
macro_rules! export_policy {
    ($definition:ty) => {
        type ExportedPolicy = $crate::component::Component<$definition>;
        $crate::bindings::export!(ExportedPolicy with_types_in $crate::bindings);
    };
}

/// Inside `impl Guest for MyPolicy`, implements the named exports by calling another policy's, for a
/// policy (or test fixture) that changes only a few: `delegate_exports!(Component<L4Fullnat>: translate, recover);`.
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
    (@one $to:ty, configure) => {
        fn configure(settings: $crate::policy_types::Settings) -> Result<(), $crate::policy_types::PolicyError> {
            <$to as $crate::policy::Guest>::configure(settings)
        }
    };
    (@one $to:ty, translate) => {
        fn translate(op: $crate::octavia::Operation) -> Result<$crate::policy_types::Plan, $crate::policy_types::Refusal> {
            <$to as $crate::policy::Guest>::translate(op)
        }
    };
    (@one $to:ty, desired_rules) => {
        fn desired_rules() -> Vec<$crate::policy_types::DesiredRule> {
            <$to as $crate::policy::Guest>::desired_rules()
        }
    };
    (@one $to:ty, recover) => {
        fn recover(observed: Vec<$crate::loxilb_types::LbRule>) -> $crate::policy_types::Recovery {
            <$to as $crate::policy::Guest>::recover(observed)
        }
    };
    (@one $to:ty, migrate) => {
        fn migrate(legacy: Vec<$crate::policy_types::LegacyEntry>) -> $crate::policy_types::Migration {
            <$to as $crate::policy::Guest>::migrate(legacy)
        }
    };
    (@one $to:ty, owns_rule) => {
        fn owns_rule(name: String) -> bool {
            <$to as $crate::policy::Guest>::owns_rule(name)
        }
    };
    (@one $to:ty, operating_statuses) => {
        fn operating_statuses(observed: Vec<$crate::loxilb_types::ObservedRule>) -> Vec<$crate::octavia::ObjectStatus> {
            <$to as $crate::policy::Guest>::operating_statuses(observed)
        }
    };
    (@one $to:ty, statistics) => {
        fn statistics(observed: Vec<$crate::loxilb_types::ObservedRule>) -> Vec<$crate::policy_types::ListenerStats> {
            <$to as $crate::policy::Guest>::statistics(observed)
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
    fn profile() -> Profile {
        Profile::default()
    }
}
