//! How provider requests reach the host: a Unix socket (single node, the default) or oslo.messaging
//! RPC over RabbitMQ (several hosts). Both carry the messages of docs/host-protocol.md.

pub mod amqp;
pub mod amqp_tls;
pub mod peer;
pub mod unix;
