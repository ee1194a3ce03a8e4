//! Traffic a test drives through the simulator, so that LoxiLB's counters move: the per-endpoint counters
//! of `GET /config/loadbalancer/all` and the connection table of `GET /config/conntrack/all`, in the shapes
//! loxilb 64045de serves (see `loxilb_api::conntrack` for where each field comes from in its source).
//!
//! A connection is two table entries, as LoxiLB's datapath keeps them for a NAT rule: the forward one
//! (client → VIP:PORT, action `dnat-EP:PORT:w0`) and the reply one (endpoint → client, action
//! `snat-VIP:PORT:w0`), each with its own direction's packets and bytes. In the one-arm and full NAT modes
//! the forward action is `fdnat-SRC,EP:PORT:w0` and the reply entry goes from the endpoint to LoxiLB's
//! source address (`FULLNAT_SOURCE` here) and the client's port, with action `fsnat-VIP,CLIENT:PORT:w0`.
//! A full-proxy rule's connection is one entry (`fp|…`) counting both directions. The bytes sent forward
//! also count on the chosen endpoint, as LoxiLB's NAT map counts them. Closing a connection removes its
//! entries, as LoxiLB's table does once its garbage collection has passed; the endpoint counters stay.
//!
//! Not modelled: DSR's replies bypassing LoxiLB (the simulator counts them like the default mode's), and
//! closing states (`fini`, `closed-wait`) lingering before the entries go.

use std::net::IpAddr;

use loxilb_api::ConntrackEntry;

use crate::rules::{go_ip_string, Core, NatShape};

/// The address LoxiLB sources full-NAT connections from, in the simulator (a real node uses its own
/// interface address toward the endpoints, or the rule's secondary IPs).
const FULLNAT_SOURCE_V4: &str = "198.51.100.1";
const FULLNAT_SOURCE_V6: &str = "2001:db8:ffff::1";

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

    /// The reply entry of `flow`, by its action (which names the VIP, and the client in full NAT) and
    /// the client's port; none for a full-proxy connection.
    fn reply_index(&self, flow: &Flow, vip: &str, client: &str) -> Option<usize> {
        let (snat, fsnat) = (format!("snat-{vip}:{}:w0", flow.port), format!("fsnat-{vip},{client}:{}:w0", flow.port));
        self.entries.iter().position(|e| {
            e.protocol == flow.protocol
                && e.destination_port == flow.client.1
                && ((e.conntrack_act == snat && e.destination_ip == client) || e.conntrack_act == fsnat)
        })
    }

    /// Opens `flow` (an open one is left as it is) to the next endpoint of the rule serving it.
    pub fn open(&mut self, core: &Core, flow: &Flow) -> Result<(), String> {
        let (vip, client) = (canonical(&flow.vip)?, canonical(&flow.client.0)?);
        if self.forward_index(flow, &vip, &client).is_some() {
            return Ok(());
        }
        let (ep, ep_port, shape) = core.endpoint_for(&vip, flow.port, &flow.protocol, self.opened)?;
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
        let source = if vip.contains(':') { FULLNAT_SOURCE_V6 } else { FULLNAT_SOURCE_V4 };
        let (cport, port) = (flow.client.1, flow.port);
        match shape {
            NatShape::Dnat => {
                self.entries.push(entry(&client, cport, &vip, port, format!("dnat-{ep}:{ep_port}:w0")));
                self.entries.push(entry(&ep, ep_port, &client, cport, format!("snat-{vip}:{port}:w0")));
            }
            NatShape::Full => {
                self.entries.push(entry(&client, cport, &vip, port, format!("fdnat-{source},{ep}:{ep_port}:w0")));
                self.entries.push(entry(&ep, ep_port, source, cport, format!("fsnat-{vip},{client}:{port}:w0")));
            }
            NatShape::Proxy => {
                let act = format!("fp|{source}:{cport}->{ep}:{ep_port}|{}", flow.protocol);
                self.entries.push(ConntrackEntry { conntrack_state: "est".into(), ..entry(&client, cport, &vip, port, act) });
            }
        }
        Ok(())
    }

    /// Carries `bytes_in` from the client and `bytes_out` back over open `flow` (one packet each way
    /// that has bytes), counting the forward bytes on its endpoint too.
    pub fn carry(&mut self, core: &mut Core, flow: &Flow, bytes_in: u64, bytes_out: u64) -> Result<(), String> {
        let (vip, client) = (canonical(&flow.vip)?, canonical(&flow.client.0)?);
        let forward = self.forward_index(flow, &vip, &client).ok_or_else(|| format!("{flow:?} is not open"))?;
        let reply = self.reply_index(flow, &vip, &client);
        let packets = |bytes| u64::from(bytes > 0);
        let ep = endpoint_of(&self.entries[forward].conntrack_act)?;
        core.count(&vip, flow.port, &flow.protocol, ep, packets(bytes_in), bytes_in)?;
        let f = &mut self.entries[forward];
        f.packets += packets(bytes_in);
        f.bytes += bytes_in;
        match reply {
            Some(reply) => {
                let r = &mut self.entries[reply];
                r.packets += packets(bytes_out);
                r.bytes += bytes_out;
            }
            // Full proxy: one entry for both directions.
            None => {
                f.packets += packets(bytes_out);
                f.bytes += bytes_out;
            }
        }
        Ok(())
    }

    /// Closes `flow`: both its entries leave the table.
    pub fn close(&mut self, flow: &Flow) -> Result<(), String> {
        let (vip, client) = (canonical(&flow.vip)?, canonical(&flow.client.0)?);
        let forward = self.forward_index(flow, &vip, &client).ok_or_else(|| format!("{flow:?} is not open"))?;
        let mut gone: Vec<usize> = [Some(forward), self.reply_index(flow, &vip, &client)].into_iter().flatten().collect();
        // Highest index first, so the other stays where it was found.
        gone.sort_unstable_by(|a, b| b.cmp(a));
        for i in gone {
            self.entries.remove(i);
        }
        Ok(())
    }
}

/// The endpoint a forward entry's action names: `dnat-EP:PORT:wN`, `fdnat-SRC,EP:PORT:wN` or
/// `fp|SRC:SPORT->EP:PORT|proto`.
fn endpoint_of(act: &str) -> Result<(IpAddr, u16), String> {
    let target = if let Some(proxy) = act.strip_prefix("fp|") {
        proxy.split_once("->").and_then(|(_, to)| to.rsplit_once('|')).map(|(to, _)| to)
    } else {
        let nat = act.strip_prefix("dnat-").or_else(|| act.strip_prefix("fdnat-").and_then(|a| a.split_once(',').map(|(_, ep)| ep)));
        nat.and_then(|a| a.rsplit_once(':')).map(|(a, _)| a)
    };
    let unreadable = || format!("unreadable action {act}");
    let (ip, port) = target.and_then(|t| t.rsplit_once(':')).ok_or_else(unreadable)?;
    Ok((ip.parse().map_err(|_| unreadable())?, port.parse().map_err(|_| unreadable())?))
}
