//! The delivery guarantees the stages rely on, checked on both transports:
//! the in-process bus and a real nats-server started for each test.

use std::time::Duration;

use bus::stage::{self, Failure, Handler};
use bus::{Bus, ConsumerSpec, Delivery, Outgoing, StageContext};
use schemas::stream;
use testkit::NatsServer;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(1500);

fn spec(durable: &str) -> ConsumerSpec {
    let mut spec = ConsumerSpec::new(stream::EVENTS, durable, "fim.events.>");
    spec.ack_wait = Duration::from_secs(1);
    spec
}

async fn nats() -> (NatsServer, Bus) {
    let server = NatsServer::start().expect("nats-server must start");
    let bus = Bus::connect(&server.url(), "test").await.expect("connect to nats-server");
    (server, bus)
}

async fn publish(bus: &Bus, id: &str, body: &str) {
    bus.publish(Outgoing::new("fim.events.node-1", id, body.as_bytes().to_vec())).await.unwrap();
}

async fn next(consumer: &mut bus::Consumer) -> Delivery {
    timeout(WAIT, consumer.next()).await.expect("a delivery in time").unwrap().unwrap()
}

async fn nothing_more(consumer: &mut bus::Consumer) {
    if let Ok(Some(Ok(delivery))) = timeout(QUIET, consumer.next()).await {
        panic!("unexpected delivery {:?}", delivery.payload);
    }
}

async fn acked_messages_are_not_delivered_again(bus: Bus) {
    publish(&bus, "a", "one").await;
    publish(&bus, "b", "two").await;
    let mut consumer = bus.consumer(spec("acks")).await.unwrap();
    for expected in ["one", "two"] {
        let delivery = next(&mut consumer).await;
        assert_eq!(&delivery.payload[..], expected.as_bytes());
        assert_eq!(delivery.delivered, 1);
        delivery.ack().await.unwrap();
    }
    drop(consumer);
    let mut again = bus.consumer(spec("acks")).await.unwrap();
    nothing_more(&mut again).await;
}

async fn unacked_messages_come_back_after_a_crash(bus: Bus) {
    publish(&bus, "a", "payload").await;
    let mut consumer = bus.consumer(spec("crash")).await.unwrap();
    let first = next(&mut consumer).await;
    assert_eq!(first.delivered, 1);
    // The process dies before acknowledging.
    drop(first);
    drop(consumer);

    let mut restarted = bus.consumer(spec("crash")).await.unwrap();
    let again = next(&mut restarted).await;
    assert_eq!(&again.payload[..], b"payload");
    assert!(again.delivered >= 2, "delivered {} times", again.delivered);
    again.ack().await.unwrap();
    nothing_more(&mut restarted).await;
}

async fn repeated_message_ids_are_stored_once(bus: Bus) {
    publish(&bus, "same-id", "first").await;
    publish(&bus, "same-id", "retry of first").await;
    publish(&bus, "other-id", "second").await;
    let mut consumer = bus.consumer(spec("dedup")).await.unwrap();
    for expected in ["first", "second"] {
        let delivery = next(&mut consumer).await;
        assert_eq!(&delivery.payload[..], expected.as_bytes());
        delivery.ack().await.unwrap();
    }
    nothing_more(&mut consumer).await;
}

async fn nak_redelivers_and_headers_survive(bus: Bus) {
    let mut message = Outgoing::new("fim.events.node-1", "h", b"x".to_vec());
    message
        .headers
        .insert("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    bus.publish(message).await.unwrap();
    let mut consumer = bus.consumer(spec("nak")).await.unwrap();
    let first = next(&mut consumer).await;
    assert_eq!(first.headers.get("traceparent").map(|v| &v[..3]), Some("00-"));
    first.nak(Duration::from_millis(100)).await.unwrap();
    let second = next(&mut consumer).await;
    assert_eq!(second.stream_sequence, first.stream_sequence);
    assert_eq!(second.delivered, 2);
    second.ack().await.unwrap();
}

async fn progress_holds_off_redelivery(bus: Bus) {
    publish(&bus, "slow", "long work").await;
    let mut worker = bus.consumer(spec("progress")).await.unwrap();
    let mut other = bus.consumer(spec("progress")).await.unwrap();
    let delivery = next(&mut worker).await;
    // Four times the 1 s ack wait, reporting progress every 400 ms.
    for _ in 0..10 {
        delivery.in_progress().await.unwrap();
        if let Ok(Some(Ok(again))) = timeout(Duration::from_millis(400), other.next()).await {
            panic!("redelivered while in progress: {:?}", again.payload);
        }
    }
    delivery.ack().await.unwrap();
    nothing_more(&mut other).await;
}

struct Recorder(tokio::sync::mpsc::UnboundedSender<schemas::RescanRequest>);

impl Handler<schemas::RescanRequest> for Recorder {
    async fn handle(
        &mut self,
        message: schemas::RescanRequest,
        _: &Delivery,
    ) -> Result<(), Failure> {
        self.0.send(message).map_err(|e| Failure::Transient(e.into()))
    }
}

async fn malformed_messages_go_to_dead_letters_and_the_stage_goes_on(bus: Bus) {
    let ctx = StageContext::standalone(bus.clone());
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    let consumer = bus.consumer(spec("stage")).await.unwrap();
    let loop_ctx = ctx.clone();
    let stage = tokio::spawn(async move {
        stage::consume(&loop_ctx, "test", consumer, Recorder(sender)).await;
    });

    publish(&bus, "bad", "\u{1}not messagepack").await;
    let good = schemas::RescanRequest {
        schema_version: schemas::SCHEMA_VERSION,
        id: "r1".into(),
        node: "node-1".into(),
        reason: "test".into(),
    };
    let payload = schemas::encode(&good).unwrap();
    bus.publish(Outgoing::new("fim.events.node-1", "good", payload)).await.unwrap();

    let handled = timeout(WAIT, received.recv()).await.expect("good message handled").unwrap();
    assert_eq!(handled, good);
    let mut dlq = ConsumerSpec::new(stream::DEAD_LETTERS, "dlq", "fim.dlq.>");
    dlq.ack_wait = Duration::from_secs(1);
    let mut dead = bus.consumer(dlq).await.unwrap();
    let letter = next(&mut dead).await;
    assert_eq!(letter.subject, "fim.dlq.test");
    assert_eq!(&letter.payload[..], "\u{1}not messagepack".as_bytes());
    assert_eq!(letter.headers.get(schemas::header::DEAD_LETTER_SUBJECT), Some("fim.events.node-1"));
    assert_eq!(letter.headers.get(schemas::header::DEAD_LETTER_REASON), Some("malformed"));

    ctx.shutdown.cancel();
    timeout(WAIT, stage).await.expect("stage stops on shutdown").unwrap();
}

macro_rules! on_both_transports {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test]
            async fn $name() {
                super::$name(bus::Bus::memory()).await;
            })*
        }
        mod nats {
            $(#[tokio::test]
            async fn $name() {
                let (_server, bus) = super::nats().await;
                super::$name(bus).await;
            })*
        }
    };
}

on_both_transports!(
    acked_messages_are_not_delivered_again,
    unacked_messages_come_back_after_a_crash,
    repeated_message_ids_are_stored_once,
    nak_redelivers_and_headers_survive,
    progress_holds_off_redelivery,
    malformed_messages_go_to_dead_letters_and_the_stage_goes_on,
);

#[tokio::test]
async fn publishes_survive_a_nats_restart() {
    let (mut server, bus) = nats().await;
    publish(&bus, "before", "stored").await;
    server.restart().expect("nats-server restarts");
    let mut consumer = None;
    for _ in 0..50 {
        match bus.consumer(spec("restart")).await {
            Ok(c) => {
                consumer = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let mut consumer = consumer.expect("consumer after restart");
    let delivery = next(&mut consumer).await;
    assert_eq!(&delivery.payload[..], b"stored");
}
