//! The cases of Eclipse Paho's MQTT 3.1.1 interoperability suite (`client_test.py` in
//! eclipse/paho.mqtt.testing), one test each, over real sockets against the plain listener.
//! CI has no network to fetch the suite, so each case is written here with the topics and
//! payloads Paho uses and the section of MQTT 3.1.1 it checks.
//!
//! As in the run of the suite, clients connect without credentials and act as a
//! service principal allowed `readwrite #`, with one deny rule for the subscribe-failure case
//! (`deny test/nosubscribe`, written first: the first matching rule wins).

use gema_broker::{BrokerConfig, Rule, ServicePrincipal};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, LastWill, Packet, PubAck, PubComp, PubRec, PubRel,
    Publish, SubscribeReasonCode,
};
use tokio::net::TcpStream;

use crate::helpers::{RawClient, TestBroker};

/// Paho's topics and filters.
const TOPICS: [&str; 5] = ["TopicA", "TopicA/B", "Topic/C", "TopicA/C", "/TopicA"];
const WILDTOPICS: [&str; 7] = ["TopicA/+", "+/C", "#", "/#", "/+", "+/+", "TopicA/#"];
const NOSUBSCRIBE: &str = "test/nosubscribe";

fn paho_service(config: &mut BrokerConfig) {
    config.services.push(ServicePrincipal {
        name: "paho".into(),
        password: None,
        rules: Rule::parse_list(&["deny test/nosubscribe", "readwrite #"]).unwrap(),
    });
    // A second principal that may publish `$SYS/…`, to show where such topics go.
    config.services.push(ServicePrincipal {
        name: "sys".into(),
        password: Some("sys-secret".into()),
        rules: Rule::parse_list(&["readwrite $SYS/#"]).unwrap(),
    });
    if let Some(plain) = config.plain.as_mut() {
        plain.anonymous_service = Some("paho".into());
    }
}

async fn paho_broker() -> TestBroker {
    TestBroker::start_with(paho_service).await
}

/// A Paho-like client on the plain listener: answers the broker's QoS flows on its own
/// (unless told not to) and keeps what it received.
struct Client {
    raw: RawClient<TcpStream>,
    received: Vec<Publish>,
    /// Acknowledge incoming QoS 1/2 publishes (Paho's `pause()` turns this off).
    ack: bool,
    next_pkid: u16,
}

impl Client {
    async fn open(t: &TestBroker) -> Self {
        let addr = t.broker.plain_addr().expect("the plain listener is on");
        Client {
            raw: RawClient::new(TcpStream::connect(addr).await.unwrap()),
            received: Vec::new(),
            ack: true,
            next_pkid: 1,
        }
    }

    /// Opens a connection and sends CONNECT (no credentials: the anonymous `paho` service).
    async fn connect_with(
        t: &TestBroker,
        client_id: &str,
        adjust: impl FnOnce(&mut Connect),
    ) -> (Self, ConnAck) {
        let mut c = Self::open(t).await;
        let mut connect = Connect::new(client_id);
        connect.keep_alive = 0;
        adjust(&mut connect);
        c.raw.send(&Packet::Connect(connect)).await;
        let ack = match c.raw.recv().await {
            Some(Packet::ConnAck(a)) => a,
            other => panic!("expected CONNACK, got {other:?}"),
        };
        (c, ack)
    }

    async fn connect(t: &TestBroker, client_id: &str, clean: bool) -> Self {
        let (c, ack) = Self::connect_with(t, client_id, |c| c.clean_session = clean).await;
        assert_eq!(ack.code, ConnectReturnCode::Success, "{client_id} connects");
        c
    }

    fn pkid(&mut self) -> u16 {
        let p = self.next_pkid;
        self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
        p
    }

    /// Reads one packet, answering QoS flows; returns what is not a PUBLISH (`None` when
    /// the broker closed the connection).
    async fn step(&mut self) -> Option<Packet> {
        let packet = self.raw.recv().await?;
        match &packet {
            Packet::Publish(p) => {
                if self.ack {
                    match p.qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => {
                            self.raw.send(&Packet::PubAck(PubAck::new(p.pkid))).await
                        }
                        QoS::ExactlyOnce => {
                            self.raw.send(&Packet::PubRec(PubRec::new(p.pkid))).await
                        }
                    }
                }
                self.received.push(p.clone());
            }
            Packet::PubRel(r) => self.raw.send(&Packet::PubComp(PubComp::new(r.pkid))).await,
            Packet::PubRec(r) => self.raw.send(&Packet::PubRel(PubRel::new(r.pkid))).await,
            _ => {}
        }
        Some(packet)
    }

    /// Reads until the broker's answer matching `done` (answering QoS flows meanwhile).
    async fn until(&mut self, what: &str, done: impl Fn(&Packet) -> bool) -> Packet {
        loop {
            match self.step().await {
                Some(p) if done(&p) => return p,
                Some(_) => {}
                None => panic!("connection closed while waiting for {what}"),
            }
        }
    }

    /// PINGREQ answered by PINGRESP: the connection is up and everything the broker sends
    /// for what came before has arrived (it routes before it answers).
    async fn settle(&mut self) {
        self.raw.send(&Packet::PingReq).await;
        self.until("PINGRESP", |p| matches!(p, Packet::PingResp))
            .await;
    }

    async fn subscribe(&mut self, filters: &[(&str, QoS)]) -> Vec<SubscribeReasonCode> {
        let pkid = self.pkid();
        let mut s = rumqttc::mqttbytes::v4::Subscribe::new_many(
            filters
                .iter()
                .map(|(f, q)| rumqttc::mqttbytes::v4::SubscribeFilter::new((*f).into(), *q)),
        );
        s.pkid = pkid;
        self.raw.send(&Packet::Subscribe(s)).await;
        match self
            .until(
                "SUBACK",
                |p| matches!(p, Packet::SubAck(a) if a.pkid == pkid),
            )
            .await
        {
            Packet::SubAck(a) => a.return_codes,
            _ => unreachable!(),
        }
    }

    /// Publishes and waits for the end of its QoS flow (PUBACK, or PUBREC → PUBREL →
    /// PUBCOMP); a QoS 0 publish is followed by a settle.
    async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
        let pkid = if qos == QoS::AtMostOnce {
            0
        } else {
            self.pkid()
        };
        let mut p = Publish::new(topic, qos, payload.to_vec());
        p.pkid = pkid;
        p.retain = retain;
        self.raw.send(&Packet::Publish(p)).await;
        match qos {
            QoS::AtMostOnce => self.settle().await,
            QoS::AtLeastOnce => {
                self.until(
                    "PUBACK",
                    |p| matches!(p, Packet::PubAck(a) if a.pkid == pkid),
                )
                .await;
            }
            QoS::ExactlyOnce => {
                self.until(
                    "PUBCOMP",
                    |p| matches!(p, Packet::PubComp(a) if a.pkid == pkid),
                )
                .await;
            }
        }
    }

    /// Reads until `n` publishes have been received in all.
    async fn wait_for(&mut self, n: usize) {
        while self.received.len() < n {
            if self.step().await.is_none() {
                panic!(
                    "connection closed after {} of {n} publishes",
                    self.received.len()
                );
            }
        }
    }

    async fn disconnect(mut self) {
        self.raw.send(&Packet::Disconnect).await;
        // The broker closes its side; nothing else is expected.
        while let Some(p) = self.raw.recv().await {
            assert!(
                !matches!(p, Packet::Publish(_)),
                "publish after DISCONNECT: {p:?}"
            );
        }
    }

    fn payloads(&self) -> Vec<(String, Vec<u8>, QoS)> {
        let mut v: Vec<_> = self
            .received
            .iter()
            .map(|p| (p.topic.clone(), p.payload.to_vec(), p.qos))
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    }
}

fn will(topic: &str, payload: &str) -> LastWill {
    LastWill::new(topic, payload.as_bytes().to_vec(), QoS::AtMostOnce, false)
}

/// `test_basic`: connect, subscribe, publish at QoS 0, 1 and 2 and receive all three
/// (MQTT 3.1.1 §3.1, §3.3, §3.8, §4.3: each QoS flow, §3.8.4: the granted QoS caps the
/// delivered one).
#[tokio::test]
async fn paho_basic() {
    let t = paho_broker().await;
    Client::connect(&t, "myclientid", true)
        .await
        .disconnect()
        .await;

    let mut a = Client::connect(&t, "myclientid", true).await;
    assert_eq!(
        a.subscribe(&[(TOPICS[0], QoS::ExactlyOnce)]).await,
        vec![SubscribeReasonCode::Success(QoS::ExactlyOnce)]
    );
    a.publish(TOPICS[0], b"qos 0", QoS::AtMostOnce, false).await;
    a.publish(TOPICS[0], b"qos 1", QoS::AtLeastOnce, false)
        .await;
    a.publish(TOPICS[0], b"qos 2", QoS::ExactlyOnce, false)
        .await;
    a.wait_for(3).await;
    a.settle().await;
    assert_eq!(
        a.payloads(),
        vec![
            (TOPICS[0].into(), b"qos 0".to_vec(), QoS::AtMostOnce),
            (TOPICS[0].into(), b"qos 1".to_vec(), QoS::AtLeastOnce),
            (TOPICS[0].into(), b"qos 2".to_vec(), QoS::ExactlyOnce),
        ]
    );
    a.disconnect().await;
}

/// `test_retained_messages`: retained messages at each QoS are delivered on subscribe with
/// RETAIN set, and a retained message with an empty payload clears the topic
/// (MQTT 3.1.1 §3.3.1.3).
#[tokio::test]
async fn paho_retained_messages() {
    let t = paho_broker().await;
    let mut a = Client::connect(&t, "myclientid", true).await;
    a.publish(TOPICS[1], b"qos 0", QoS::AtMostOnce, true).await;
    a.publish(TOPICS[2], b"qos 1", QoS::AtLeastOnce, true).await;
    a.publish(TOPICS[3], b"qos 2", QoS::ExactlyOnce, true).await;
    a.subscribe(&[(WILDTOPICS[5], QoS::ExactlyOnce)]).await;
    a.wait_for(3).await;
    a.settle().await;
    assert_eq!(
        a.payloads(),
        vec![
            (TOPICS[2].into(), b"qos 1".to_vec(), QoS::AtLeastOnce),
            (TOPICS[1].into(), b"qos 0".to_vec(), QoS::AtMostOnce),
            (TOPICS[3].into(), b"qos 2".to_vec(), QoS::ExactlyOnce),
        ]
    );
    assert!(a.received.iter().all(|p| p.retain), "{:?}", a.received);
    a.disconnect().await;

    // Paho's cleanup: an empty retained publish to each topic; a new subscriber gets none.
    let mut a = Client::connect(&t, "myclientid", true).await;
    for topic in &TOPICS[1..4] {
        a.publish(topic, b"", QoS::AtMostOnce, true).await;
    }
    a.subscribe(&[(WILDTOPICS[5], QoS::ExactlyOnce)]).await;
    a.settle().await;
    assert!(a.received.is_empty(), "{:?}", a.received);
    a.disconnect().await;
}

/// `test_offline_message_queueing`: a persistent session (CleanSession = 0) receives, on
/// reconnect, the QoS 1 and 2 messages published while it was away (MQTT 3.1.1 §3.1.2.4;
/// QoS 0 may or may not be kept, and Gema does not keep it).
#[tokio::test]
async fn paho_offline_message_queueing() {
    let t = paho_broker().await;
    let mut a = Client::connect(&t, "myclientid", false).await;
    a.subscribe(&[(WILDTOPICS[5], QoS::ExactlyOnce)]).await;
    a.disconnect().await;

    let mut b = Client::connect(&t, "myclientid2", true).await;
    b.publish(TOPICS[1], b"qos 0", QoS::AtMostOnce, false).await;
    b.publish(TOPICS[2], b"qos 1", QoS::AtLeastOnce, false)
        .await;
    b.publish(TOPICS[3], b"qos 2", QoS::ExactlyOnce, false)
        .await;
    b.disconnect().await;

    let (mut a, ack) = Client::connect_with(&t, "myclientid", |c| c.clean_session = false).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert!(ack.session_present, "the session was kept");
    a.wait_for(2).await;
    a.settle().await;
    let got = a.payloads();
    assert!(got.len() == 2 || got.len() == 3, "{got:?}");
    assert!(got.contains(&(TOPICS[2].into(), b"qos 1".to_vec(), QoS::AtLeastOnce)));
    assert!(got.contains(&(TOPICS[3].into(), b"qos 2".to_vec(), QoS::ExactlyOnce)));
    a.disconnect().await;
}

/// `test_will_message`: a client whose connection ends without DISCONNECT has its will
/// published; one that sends DISCONNECT does not (MQTT 3.1.1 §3.1.2.5, §3.14.4).
#[tokio::test]
async fn paho_will_message() {
    let t = paho_broker().await;
    let mut b = Client::connect(&t, "myclientid2", true).await;
    b.subscribe(&[(TOPICS[2], QoS::ExactlyOnce)]).await;

    let (polite, ack) = Client::connect_with(&t, "polite", |c| {
        c.last_will = Some(will(TOPICS[2], "polite client not disconnected"));
    })
    .await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    polite.disconnect().await;

    let (a, ack) = Client::connect_with(&t, "myclientid", |c| {
        c.keep_alive = 2;
        c.last_will = Some(will(TOPICS[2], "client not disconnected"));
    })
    .await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    // Paho's `terminate()`: the socket closes without DISCONNECT.
    drop(a);
    b.wait_for(1).await;
    b.settle().await;
    assert_eq!(
        b.payloads(),
        vec![(
            TOPICS[2].into(),
            b"client not disconnected".to_vec(),
            QoS::AtMostOnce
        )]
    );
}

/// `test_zero_length_clientid`: an empty client id with CleanSession = 1 is assigned one by
/// the server; with CleanSession = 0 it is refused with 0x02 (MQTT 3.1.1 §3.1.3.1).
#[tokio::test]
async fn paho_zero_length_clientid() {
    let t = paho_broker().await;
    let (mut refused, ack) = Client::connect_with(&t, "", |c| c.clean_session = false).await;
    assert_eq!(ack.code, ConnectReturnCode::BadClientId);
    assert!(refused.raw.recv().await.is_none(), "closed after refusing");

    let (mut a, ack) = Client::connect_with(&t, "", |c| c.clean_session = true).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert!(!ack.session_present);
    // It is a working client: it can subscribe and receive.
    a.subscribe(&[(TOPICS[0], QoS::AtLeastOnce)]).await;
    a.publish(TOPICS[0], b"assigned", QoS::AtLeastOnce, false)
        .await;
    a.wait_for(1).await;
    a.disconnect().await;
}

/// `test_overlapping_subscriptions`: a message matching two of a client's subscriptions is
/// delivered once at the highest granted QoS, or once per subscription (MQTT 3.1.1
/// §3.3.5).
#[tokio::test]
async fn paho_overlapping_subscriptions() {
    let t = paho_broker().await;
    let mut a = Client::connect(&t, "myclientid", true).await;
    a.subscribe(&[
        (WILDTOPICS[6], QoS::ExactlyOnce),
        (WILDTOPICS[0], QoS::AtLeastOnce),
    ])
    .await;
    a.publish(
        TOPICS[3],
        b"overlapping topic filters",
        QoS::ExactlyOnce,
        false,
    )
    .await;
    a.wait_for(1).await;
    a.settle().await;
    let mut qos: Vec<QoS> = a.received.iter().map(|p| p.qos).collect();
    qos.sort_by_key(|q| *q as u8);
    assert!(
        qos == [QoS::ExactlyOnce] || qos == [QoS::AtLeastOnce, QoS::ExactlyOnce],
        "{:?}",
        a.received
    );
    assert!(
        a.received
            .iter()
            .all(|p| p.topic == TOPICS[3] && &p.payload[..] == b"overlapping topic filters")
    );
    a.disconnect().await;
}

/// `test_keepalive`: a client silent for 1.5 times its keepalive is disconnected by the
/// server, and its will is published (MQTT 3.1.1 §3.1.2.10).
#[tokio::test]
async fn paho_keepalive() {
    let t = paho_broker().await;
    let mut b = Client::connect(&t, "myclientid2", true).await;
    b.subscribe(&[(TOPICS[4], QoS::ExactlyOnce)]).await;
    let (mut a, ack) = Client::connect_with(&t, "myclientid", |c| {
        c.keep_alive = 1;
        c.last_will = Some(will(TOPICS[4], "keepalive expiry"));
    })
    .await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    // Sends nothing: the broker closes it (within the helpers' wait) ...
    assert!(a.raw.recv().await.is_none(), "the silent client is closed");
    // ... and publishes its will.
    b.wait_for(1).await;
    assert_eq!(
        b.payloads(),
        vec![(
            TOPICS[4].into(),
            b"keepalive expiry".to_vec(),
            QoS::AtMostOnce
        )]
    );
}

/// `test_redelivery_on_reconnect`: QoS 1 and 2 messages sent to a persistent session and
/// not acknowledged are sent again, with DUP set, when it reconnects (MQTT 3.1.1 §4.4).
#[tokio::test]
async fn paho_redelivery_on_reconnect() {
    let t = paho_broker().await;
    let mut b = Client::connect(&t, "myclientid2", false).await;
    b.subscribe(&[(WILDTOPICS[6], QoS::ExactlyOnce)]).await;
    // Paho's `pause()`: the client stops acknowledging what it receives.
    b.ack = false;
    b.publish(TOPICS[1], b"", QoS::AtLeastOnce, false).await;
    b.publish(TOPICS[3], b"", QoS::ExactlyOnce, false).await;
    b.wait_for(2).await;
    assert!(b.received.iter().all(|p| !p.dup), "{:?}", b.received);
    b.disconnect().await;

    let (mut b, ack) = Client::connect_with(&t, "myclientid2", |c| c.clean_session = false).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert!(ack.session_present);
    b.wait_for(2).await;
    b.settle().await;
    assert_eq!(
        b.payloads(),
        vec![
            (TOPICS[1].into(), Vec::new(), QoS::AtLeastOnce),
            (TOPICS[3].into(), Vec::new(), QoS::ExactlyOnce),
        ]
    );
    assert!(b.received.iter().all(|p| p.dup), "{:?}", b.received);
    b.disconnect().await;
}

/// `test_dollar_topics`: a filter starting with a wildcard does not match a topic starting
/// with `$` (MQTT 3.1.1 §4.7.2), and a publish to a `$` topic the server does not allow is
/// acknowledged and dropped, not a reason to disconnect (§3.3.5: the server may refuse it
/// but has no negative acknowledgement).
#[tokio::test]
async fn paho_dollar_topics() {
    let t = paho_broker().await;
    let mut a = Client::connect(&t, "myclientid", true).await;
    a.subscribe(&[
        (WILDTOPICS[5], QoS::ExactlyOnce),
        (WILDTOPICS[2], QoS::ExactlyOnce),
    ])
    .await;

    // A `$SYS/…` message that is allowed and routed: `#` and `+/+` do not get it, a
    // `$SYS/#` subscriber does.
    let mut sys = Client::open(&t).await;
    let mut connect = Connect::new("sys-1");
    connect.set_login("sys", "sys-secret");
    sys.raw.send(&Packet::Connect(connect)).await;
    assert!(matches!(
        sys.raw.recv().await,
        Some(Packet::ConnAck(ConnAck {
            code: ConnectReturnCode::Success,
            ..
        }))
    ));
    sys.subscribe(&[("$SYS/#", QoS::AtLeastOnce)]).await;
    sys.publish("$SYS/broker/clients", b"1", QoS::AtLeastOnce, false)
        .await;
    sys.wait_for(1).await;

    // Paho's case: a publish to `$TopicA/B`, which `readwrite #` does not allow.
    a.publish(&format!("${}", TOPICS[1]), b"", QoS::AtLeastOnce, false)
        .await;
    a.settle().await;
    assert!(a.received.is_empty(), "{:?}", a.received);
    // Still connected and working.
    a.publish(TOPICS[1], b"after", QoS::AtLeastOnce, false)
        .await;
    a.wait_for(1).await;
    a.settle().await;
    assert_eq!(a.received[0].topic, TOPICS[1]);
    a.disconnect().await;
}

/// `test_subscribe_failure`: a filter the server refuses gets return code 0x80 in SUBACK,
/// the others in the same SUBSCRIBE are granted, and the connection stays (MQTT 3.1.1
/// §3.9.3).
#[tokio::test]
async fn paho_subscribe_failure() {
    let t = paho_broker().await;
    let mut a = Client::connect(&t, "myclientid", true).await;
    assert_eq!(
        a.subscribe(&[(NOSUBSCRIBE, QoS::ExactlyOnce)]).await,
        vec![SubscribeReasonCode::Failure]
    );
    assert_eq!(
        a.subscribe(&[
            (TOPICS[0], QoS::AtLeastOnce),
            (NOSUBSCRIBE, QoS::AtMostOnce)
        ])
        .await,
        vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure
        ]
    );
    a.settle().await;
    a.disconnect().await;
}
