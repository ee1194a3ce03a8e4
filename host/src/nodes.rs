//! `loxilb-octavia nodes`: each LoxiLB node of `api_endpoints` as it is now — whether it answers, its
//! version and error style, its HA role, and how far its rules are from the desired rules (rendered from a
//! copy of the mapping, so it is safe while the host runs). The exit status is 1 when a node does not
//! answer or drifts, so a script or a check can use it.

use std::sync::Arc;

use anyhow::Result;
use loxilb_api::{node_info, Loxilb};
use serde_json::{json, Value};

use crate::config::Config;
use crate::loxilb::LoxiTransport;
use crate::runtime::bindings::policy_types::DesiredRule;

/// One node, as `nodes` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    pub node: String,
    /// `None` when it answers; otherwise why not.
    pub unreachable: Option<String>,
    pub version: Option<String>,
    pub role: Option<String>,
    /// Rules it lists; `None` when they could not be listed.
    pub rules: Option<usize>,
    /// Against the desired rules (`None`: not compared).
    pub drift: Option<DriftCount>,
    /// Anything else worth knowing (an unsupported version, a listing that failed).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriftCount {
    pub missing: usize,
    pub different: usize,
    pub extra: usize,
}

impl NodeReport {
    /// Answers, and holds exactly the desired rules (when they were compared).
    pub fn healthy(&self) -> bool {
        self.unreachable.is_none() && self.drift.is_none_or(|d| d.missing + d.different + d.extra == 0)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "node": self.node, "answers": self.unreachable.is_none(), "unreachable": self.unreachable,
            "version": self.version, "error_style": self.version.as_deref().map(|v| node_info::error_style(v).describe()),
            "role": self.role, "rules": self.rules,
            "missing": self.drift.map(|d| d.missing), "different": self.drift.map(|d| d.different), "extra": self.drift.map(|d| d.extra),
            "notes": self.notes,
        })
    }
}

/// Every node of `loxilb` compared with `desired` (when known).
pub fn reports(loxilb: &Arc<dyn LoxiTransport>, desired: Option<&[DesiredRule]>) -> Vec<NodeReport> {
    let states = loxilb.survey().unwrap_or_default();
    loxilb
        .nodes()
        .into_iter()
        .zip(states)
        .map(|(node, state)| {
            let node: &(dyn LoxiTransport + 'static) = &node;
            let mut report = NodeReport {
                node: state.base.clone(),
                unreachable: None,
                version: state.version.clone(),
                role: state.role.clone(),
                rules: None,
                drift: None,
                notes: Vec::new(),
            };
            if !state.answering {
                report.unreachable = Some(node.reachable().err().map(|e| e.to_string()).unwrap_or_else(|| "did not answer the survey".into()));
                return report;
            }
            if let Some(why) = state.version.as_deref().and_then(node_info::unsupported) {
                report.notes.push(why);
            }
            match crate::wire::observed(node) {
                Ok(observed) => {
                    report.rules = Some(observed.len());
                    report.drift = desired.map(|desired| {
                        let d = crate::drift::drift(desired, &observed);
                        DriftCount { missing: d.missing.len(), different: d.different.len(), extra: d.extra.len() }
                    });
                }
                Err(e) => report.notes.push(format!("listing its rules: {e}")),
            }
            report
        })
        .collect()
}

/// The command: prints the reports (a table, or JSON) and returns the exit status.
pub fn cli(config: &Config, as_json: bool) -> Result<i32> {
    let loxilb = crate::app::loxilb(config)?;
    let (desired, why_not) = match crate::tools::read_only_sandbox(config).and_then(|mut s| s.desired_rules().map_err(|e| anyhow::anyhow!("{e}"))) {
        Ok(desired) => (Some(desired), None),
        Err(e) => (None, Some(format!("drift not compared: {e:#}"))),
    };
    let reports = reports(&loxilb, desired.as_deref().map(Vec::as_slice));
    if as_json {
        let out = json!({"desired_rules": desired.as_ref().map(|d| d.len()), "drift_unknown": why_not, "nodes": reports.iter().map(NodeReport::to_json).collect::<Vec<_>>()});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", table(&reports));
        match (&desired, &why_not) {
            (Some(d), _) => println!("desired rules: {}", d.len()),
            (None, Some(why)) => println!("{why}"),
            (None, None) => {}
        }
    }
    Ok(if reports.iter().all(NodeReport::healthy) { 0 } else { 1 })
}

fn table(reports: &[NodeReport]) -> String {
    let dash = || "-".to_string();
    let count = |n: Option<usize>| n.map(|n| n.to_string()).unwrap_or_else(dash);
    let rows: Vec<[String; 8]> = reports
        .iter()
        .map(|r| {
            [
                r.node.clone(),
                if r.unreachable.is_none() { "yes".into() } else { "no".into() },
                r.role.clone().unwrap_or_else(dash),
                r.version.clone().unwrap_or_else(dash),
                count(r.rules),
                count(r.drift.map(|d| d.missing)),
                count(r.drift.map(|d| d.different)),
                count(r.drift.map(|d| d.extra)),
            ]
        })
        .collect();
    let header = ["NODE", "ANSWERS", "ROLE", "VERSION", "RULES", "MISSING", "DIFFERENT", "EXTRA"].map(String::from);
    let widths: Vec<usize> = (0..8).map(|i| rows.iter().chain([&header]).map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let line = |r: &[String; 8]| r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string() + "\n";
    let mut out = line(&header);
    for (row, report) in rows.iter().zip(reports) {
        out.push_str(&line(row));
        for note in report.unreachable.iter().chain(&report.notes) {
            out.push_str(&format!("  {}: {note}\n", report.node));
        }
    }
    out
}
