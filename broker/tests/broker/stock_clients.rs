//! Stock clients connect over TLS with a device credential: `mosquitto_pub`/`mosquitto_sub`
//! (Debian package `mosquitto-clients`) and Python's `paho-mqtt`. CI installs both.

use std::process::{Command, Output};

use gema_broker::PresenceChange;
use rumqttc::mqttbytes::QoS;

use crate::helpers::{TestBroker, WAIT, downlink, secret};

async fn run(mut cmd: Command) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = tokio::task::spawn_blocking(move || cmd.output());
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("stock client finished in time")
        .unwrap()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} (install mosquitto-clients / paho-mqtt): {e}")
        });
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn mosquitto(t: &TestBroker, program: &str, device: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg("-h")
        .arg("localhost")
        .arg("-p")
        .arg(t.broker.tls_addr().port().to_string())
        .arg("--cafile")
        .arg(t.ca_path())
        .arg("-V")
        .arg("mqttv311")
        .arg("-i")
        .arg(device)
        .arg("-u")
        .arg(device)
        .arg("-P")
        .arg(secret(device))
        .arg("-q")
        .arg("1");
    cmd
}

#[tokio::test]
async fn mosquitto_pub_publishes_an_uplink() {
    let mut t = TestBroker::start().await;
    let mut cmd = mosquitto(&t, "mosquitto_pub", "a");
    cmd.arg("-t")
        .arg("devices/a/up/hello")
        .arg("-m")
        .arg("from mosquitto_pub");
    run(cmd).await;
    let up = t.next_uplink().await;
    assert_eq!(up.device_id, "a");
    assert_eq!(&up.payload[..], b"from mosquitto_pub");
}

#[tokio::test]
async fn mosquitto_sub_receives_a_downlink() {
    let mut t = TestBroker::start().await;
    let mut cmd = mosquitto(&t, "mosquitto_sub", "a");
    cmd.arg("-t").arg("devices/a/down/#").arg("-C").arg("1");
    let sub = tokio::spawn(run(cmd));
    assert!(matches!(
        t.next_presence().await.change,
        PresenceChange::Connected { .. }
    ));
    // The subscription may land just after CONNACK: publish until it is delivered.
    let handle = t.handle.clone();
    let delivered = async move {
        loop {
            let r = handle
                .publish(downlink(
                    "a",
                    "devices/a/down/pay",
                    "Rp 2.000",
                    QoS::AtLeastOnce,
                ))
                .unwrap();
            if r.outcome().await == gema_broker::DeliveryOutcome::Acknowledged {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, delivered).await.unwrap();
    let out = sub.await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Rp 2.000");
}

const PAHO: &str = r#"
import sys, paho.mqtt.client as mqtt
host, port, ca, dev, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
try:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev, protocol=mqtt.MQTTv311)
except AttributeError:
    c = mqtt.Client(client_id=dev, protocol=mqtt.MQTTv311)
c.tls_set(ca_certs=ca)
c.username_pw_set(dev, pw)
c.connect(host, port)
c.loop_start()
info = c.publish("devices/%s/up/hello" % dev, b"from paho", qos=1)
info.wait_for_publish(timeout=10)
assert info.is_published()
c.disconnect()
c.loop_stop()
"#;

#[tokio::test]
async fn paho_mqtt_publishes_an_uplink() {
    let mut t = TestBroker::start().await;
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(PAHO)
        .arg("localhost")
        .arg(t.broker.tls_addr().port().to_string())
        .arg(t.ca_path())
        .arg("b")
        .arg(secret("b"));
    run(cmd).await;
    let up = t.next_uplink().await;
    assert_eq!(
        (up.device_id.as_str(), &up.payload[..]),
        ("b", &b"from paho"[..])
    );
}
