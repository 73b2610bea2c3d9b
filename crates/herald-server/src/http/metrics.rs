//! `GET /metrics`: Prometheus text, rendered by `prometheus-client` from what the server
//! knows at scrape time. Nothing is counted for metrics' sake on the publish path: each
//! connection keeps its own counters and streams their own state, and a scrape sums them.

use std::fmt;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::{App, AppState};

/// What one scrape reports, gathered before encoding.
#[derive(Debug, Default)]
struct Scrape {
    msgs_in: u64,
    bytes_in: u64,
    msgs_out: u64,
    bytes_out: u64,
    connections: u64,
    connections_total: u64,
    http_connections: u64,
    http_connections_total: u64,
    event_streams: u64,
    slow_consumers: u64,
    subscriptions: u64,
    /// (stream, messages, bytes)
    streams: Vec<(String, u64, u64)>,
    /// (stream, consumer, pending, ack pending)
    consumers: Vec<(String, String, u64, u64)>,
    /// (peer, bytes in, bytes out, msgs in, msgs out)
    routes: Vec<(String, u64, u64, u64, u64)>,
    peers: u64,
    /// The replicated streams this node holds a replica of.
    replicated: Vec<herald::jetstream::StreamReplicas>,
}

impl Scrape {
    fn gather(app: &App) -> Scrape {
        let shared = &app.shared;
        let totals = shared.snapshot();
        let mut scrape = Scrape {
            msgs_in: totals.msgs_in,
            bytes_in: totals.bytes_in,
            msgs_out: totals.msgs_out,
            bytes_out: totals.bytes_out,
            connections: totals.connections,
            connections_total: totals.connections_total,
            http_connections: totals.http_connections,
            http_connections_total: totals.http_connections_total,
            event_streams: totals.event_streams,
            slow_consumers: totals.slow_consumers,
            ..Scrape::default()
        };
        scrape.subscriptions = shared.subscriptions() as u64;
        if let Some(streams) = app.streams.as_ref() {
            for info in streams.list() {
                let name = info.config.name.clone();
                for c in streams.consumers(&name).unwrap_or_default() {
                    scrape.consumers.push((
                        name.clone(),
                        c.name,
                        c.num_pending,
                        c.num_ack_pending as u64,
                    ));
                }
                scrape
                    .streams
                    .push((name, info.state.messages, info.state.bytes));
            }
        }
        if let Some(replication) = &app.replication {
            scrape.replicated = replication.streams();
        }
        if let Some(cluster) = shared.node.cluster_info() {
            for member in cluster.members {
                if let Some(route) = member.route {
                    scrape.peers += 1;
                    scrape.routes.push((
                        member.name,
                        route.bytes_in,
                        route.bytes_out,
                        route.msgs_in,
                        route.msgs_out,
                    ));
                }
            }
        }
        scrape
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let g = ConstGauge::new(v as i64);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        counter(
            &mut e,
            "herald_messages_in",
            "Messages received from clients",
            self.msgs_in,
        )?;
        counter(
            &mut e,
            "herald_bytes_in",
            "Payload bytes received from clients",
            self.bytes_in,
        )?;
        counter(
            &mut e,
            "herald_messages_out",
            "Messages sent to clients",
            self.msgs_out,
        )?;
        counter(
            &mut e,
            "herald_bytes_out",
            "Bytes written to clients",
            self.bytes_out,
        )?;
        gauge(
            &mut e,
            "herald_connections",
            "Open NATS client connections",
            self.connections,
        )?;
        counter(
            &mut e,
            "herald_connections_accepted",
            "NATS client connections accepted",
            self.connections_total,
        )?;
        gauge(
            &mut e,
            "herald_http_connections",
            "Open HTTP connections",
            self.http_connections,
        )?;
        counter(
            &mut e,
            "herald_http_connections_accepted",
            "HTTP connections accepted",
            self.http_connections_total,
        )?;
        gauge(
            &mut e,
            "herald_event_streams",
            "Open Server-Sent Events streams (subscriptions and stream consumers)",
            self.event_streams,
        )?;
        counter(
            &mut e,
            "herald_slow_consumers",
            "Clients dropped (or refused messages) as slow consumers",
            self.slow_consumers,
        )?;
        gauge(
            &mut e,
            "herald_subscriptions",
            "Subscriptions in every scope of this node",
            self.subscriptions,
        )?;
        gauge(
            &mut e,
            "herald_cluster_peers",
            "Cluster members this node has a route to",
            self.peers,
        )?;
        let g = ConstGauge::new(0i64);
        let mut family = e.encode_descriptor(
            "herald_stream_messages",
            "Messages a stream holds",
            None,
            g.metric_type(),
        )?;
        for (stream, messages, _) in &self.streams {
            ConstGauge::new(*messages as i64)
                .encode(family.encode_family(&[("stream", stream.as_str())])?)?;
        }
        let mut family = e.encode_descriptor(
            "herald_stream_bytes",
            "Bytes a stream holds",
            None,
            g.metric_type(),
        )?;
        for (stream, _, bytes) in &self.streams {
            ConstGauge::new(*bytes as i64)
                .encode(family.encode_family(&[("stream", stream.as_str())])?)?;
        }
        let mut family = e.encode_descriptor(
            "herald_consumer_pending",
            "Messages a consumer has not delivered yet",
            None,
            g.metric_type(),
        )?;
        for (stream, consumer, pending, _) in &self.consumers {
            let labels = [("stream", stream.as_str()), ("consumer", consumer.as_str())];
            ConstGauge::new(*pending as i64).encode(family.encode_family(&labels)?)?;
        }
        let mut family = e.encode_descriptor(
            "herald_consumer_ack_pending",
            "Messages a consumer delivered and that are not acknowledged",
            None,
            g.metric_type(),
        )?;
        for (stream, consumer, _, ack_pending) in &self.consumers {
            let labels = [("stream", stream.as_str()), ("consumer", consumer.as_str())];
            ConstGauge::new(*ack_pending as i64).encode(family.encode_family(&labels)?)?;
        }
        let mut family = e.encode_descriptor(
            "herald_stream_leader",
            "1 when this node's replica leads the replicated stream, else 0",
            None,
            g.metric_type(),
        )?;
        for r in &self.replicated {
            ConstGauge::new(i64::from(r.leads))
                .encode(family.encode_family(&[("stream", r.stream.as_str())])?)?;
        }
        let mut family = e.encode_descriptor(
            "herald_stream_replica_lag",
            "Raft entries a replica is behind its stream's leader (reported by the leader)",
            None,
            g.metric_type(),
        )?;
        for r in self.replicated.iter().filter(|r| r.leads) {
            for replica in &r.replicas {
                let labels = [
                    ("stream", r.stream.as_str()),
                    ("replica", replica.name.as_str()),
                ];
                ConstGauge::new(replica.lag as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        let c = ConstCounter::new(0u64);
        let mut family = e.encode_descriptor(
            "herald_stream_leader_changes",
            "Leader changes of the replicated stream this node saw",
            None,
            c.metric_type(),
        )?;
        for r in &self.replicated {
            ConstCounter::new(r.leader_changes)
                .encode(family.encode_family(&[("stream", r.stream.as_str())])?)?;
        }
        for (name, help, pick) in [
            (
                "herald_route_bytes_in",
                "Bytes received on the route from a peer",
                0,
            ),
            (
                "herald_route_bytes_out",
                "Bytes sent on the route to a peer",
                1,
            ),
            (
                "herald_route_messages_in",
                "Messages received on the route from a peer",
                2,
            ),
            (
                "herald_route_messages_out",
                "Messages sent on the route to a peer",
                3,
            ),
        ] {
            let mut family = e.encode_descriptor(name, help, None, c.metric_type())?;
            for (peer, bi, bo, mi, mo) in &self.routes {
                let v = [*bi, *bo, *mi, *mo][pick];
                ConstCounter::new(v).encode(family.encode_family(&[("peer", peer.as_str())])?)?;
            }
        }
        Ok(())
    }
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(app): AppState) -> Response {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape::gather(&app)));
    let mut text = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {err}"),
        )
            .into_response();
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
