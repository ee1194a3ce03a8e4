//! Traffic a test drives through the simulator, so that LoxiLB's counters move: the per-endpoint counters
//! of `GET /config/loadbalancer/all` and the connection table of `GET /config/conntrack/all`, in the shapes
//! loxilb 64045de serves (see `loxilb_api::conntrack` for where each field comes from in its source).
//!
//! A connection is two table entries, as LoxiLB's datapath keeps them for a NAT rule: the forward one
//! (client → VIP:PORT, action `dnat-EP:PORT:w0`) and the reply one (endpoint → client, action
//! `snat-VIP:PORT:w0`), each with its own direction's packets and bytes. The bytes sent forward also count
//! on the chosen endpoint, as LoxiLB's NAT map counts them. Closing a connection removes both entries, as
//! LoxiLB's table does once its garbage collection has passed; the endpoint counters stay.

use std::net::IpAddr;

use loxilb_api::ConntrackEntry;

use crate::rules::{go_ip_string, Core};

/// One client connection to a rule's VIP:PORT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// The client's address and port.
    pub client: (String, u16),
    pub vip: String,
    pub port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
}

impl Flow {
    /// A TCP connection from `client` (`ip:port`) to `vip:port`.
    pub fn tcp(client: &str, vip: &str, port: u16) -> Flow {
        let (ip, cport) = client.rsplit_once(':').expect("client as ip:port");
        Flow { client: (ip.trim_matches(['[', ']']).to_string(), cport.parse().expect("client port")), vip: vip.into(), port, protocol: "tcp".into() }
    }
}

/// The connection table, and how many connections were ever opened (which spreads them over endpoints).
#[derive(Debug, Default)]
pub(crate) struct Conntrack {
    entries: Vec<ConntrackEntry>,
    opened: usize,
}

fn canonical(ip: &str) -> Result<String, String> {
    ip.parse::<IpAddr>().map(|ip| go_ip_string(&ip)).map_err(|_| format!("{ip:?} is not an IP address"))
}

impl Conntrack {
    pub fn entries(&self) -> &[ConntrackEntry] {
        &self.entries
    }

    fn forward_index(&self, flow: &Flow, vip: &str, client: &str) -> Option<usize> {
        self.entries.iter().position(|e| {
            e.protocol == flow.protocol && e.destination_ip == vip && e.destination_port == flow.port && e.source_ip == client && e.source_port == flow.client.1
        })
    }

    fn reply_index(&self, flow: &Flow, vip: &str, client: &str) -> Option<usize> {
        let act = format!("snat-{vip}:{}:w0", flow.port);
        self.entries
            .iter()
            .position(|e| e.protocol == flow.protocol && e.conntrack_act == act && e.destination_ip == client && e.destination_port == flow.client.1)
    }

    /// Opens `flow` (an open one is left as it is) to the next endpoint of the rule serving it.
    pub fn open(&mut self, core: &Core, flow: &Flow) -> Result<(), String> {
        let (vip, client) = (canonical(&flow.vip)?, canonical(&flow.client.0)?);
        if self.forward_index(flow, &vip, &client).is_some() {
            return Ok(());
        }
        let (ep, ep_port) = core.endpoint_for(&vip, flow.port, &flow.protocol, self.opened)?;
        self.opened += 1;
        let ep = go_ip_string(&ep);
        let state = if flow.protocol == "udp" { "udp-est" } else { "est" };
        let entry = |sip: &str, sport, dip: &str, dport, act: String| ConntrackEntry {
            source_ip: sip.into(),
            source_port: sport,
            destination_ip: dip.into(),
            destination_port: dport,
            protocol: flow.protocol.clone(),
            conntrack_state: state.into(),
            conntrack_act: act,
            ident: "0:0".into(),
            serv_name: "-".into(),
            ..ConntrackEntry::default()
        };
        self.entries.push(entry(&client, flow.client.1, &vip, flow.port, format!("dnat-{ep}:{ep_port}:w0")));
        self.entries.push(entry(&ep, ep_port, &client, flow.client.1, format!("snat-{vip}:{}:w0", flow.port)));
        Ok(())
    }

    /// Carries `bytes_in` from the client and `bytes_out` back over open `flow` (one packet each way
    /// that has bytes), counting the forward bytes on its endpoint too.
    pub fn carry(&mut self, core: &mut Core, flow: &Flow, bytes_in: u64, bytes_out: u64) -> Result<(), String> {
        let (vip, client) = (canonical(&flow.vip)?, canonical(&flow.client.0)?);
        let forward = self.forward_index(flow, &vip, &client).ok_or_else(|| format!("{flow:?} is not open"))?;
        let reply = self.reply_index(flow, &vip, &client).ok_or_else(|| format!("{flow:?} has no reply entry"))?;
        let packets = |bytes| u64::from(bytes > 0);
        let ep = {
            let act = &self.entries[forward].conntrack_act;
            let target = act.strip_prefix("dnat-").and_then(|a| a.rsplit_once(':')).map(|(a, _)| a).unwrap_or_default();
            let (ip, port) = target.rsplit_once(':').ok_or_else(|| format!("unreadable action {act}"))?;
            (ip.parse::<IpAddr>().map_err(|e| e.to_string())?, port.parse::<u16>().map_err(|e| e.to_string())?)
        };
        core.count(&vip, flow.port, &flow.protocol, ep, packets(bytes_in), bytes_in)?;
        let f = &mut self.entries[forward];
        f.packets += packets(bytes_in);
        f.bytes += bytes_in;
        let r = &mut self.entries[reply];
        r.packets += packets(bytes_out);
        r.bytes += bytes_out;
        Ok(())
    }

    /// Closes `flow`: both its entries leave the table.
    pub fn close(&mut self, flow: &Flow) -> Result<(), String> {
        let (vip, client) = (canonical(&flow.vip)?, canonical(&flow.client.0)?);
        let reply = self.reply_index(flow, &vip, &client);
        let forward = self.forward_index(flow, &vip, &client).ok_or_else(|| format!("{flow:?} is not open"))?;
        self.entries.retain_mut({
            let (forward, reply) = (self.entries[forward].clone(), reply.map(|i| self.entries[i].clone()));
            move |e| *e != forward && Some(&*e) != reply.as_ref()
        });
        Ok(())
    }
}
