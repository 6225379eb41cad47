//! Printing what the admin API answered: a readable summary (the default), the JSON as it
//! came (`--json`), or only the ids (`--quiet`, for shell scripts). Nothing here talks to
//! the network.

use serde_json::Value;

use super::args::ApiArgs;

/// How a client command prints what the API answered.
#[derive(Debug, Clone, Copy)]
pub(super) enum Output {
    Human,
    Json,
    Quiet,
}

impl From<&ApiArgs> for Output {
    fn from(args: &ApiArgs) -> Self {
        if args.json {
            Output::Json
        } else if args.quiet {
            Output::Quiet
        } else {
            Output::Human
        }
    }
}

/// What the response is, for printing it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shape {
    One(&'static str),
    List(&'static str),
    Issued,
    Bindings,
    DynamicQr,
    Status,
    Config,
    Messages,
}

fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

pub(super) fn render(value: &Value, shape: Shape, output: Output) -> String {
    match output {
        Output::Json => serde_json::to_string_pretty(value).unwrap_or_default(),
        Output::Quiet => match shape {
            Shape::One(_) | Shape::Bindings => text(value, "id"),
            Shape::Status => text(&value["health"], "status"),
            Shape::Config => text(value, "version"),
            Shape::Messages => value
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|m| text(m, "topic"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default(),
            Shape::Issued => text(&value["device"], "id"),
            Shape::DynamicQr => text(&value["transaction"], "id"),
            Shape::List(_) => value["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|i| text(i, "id"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default(),
        },
        Output::Human => match shape {
            Shape::One(kind) => render_one(kind, value),
            Shape::List(kind) => render_list(kind, value),
            Shape::Issued => render_issued(value),
            Shape::Bindings => render_bindings(value),
            Shape::Status => {
                let mut rows = Vec::new();
                render_fields(value, "", &mut rows);
                format!(
                    "device {} is {}\n{}",
                    text(value, "device_id"),
                    text(&value["health"], "status"),
                    aligned(&rows)
                )
            }
            Shape::Config => {
                let mut rows = Vec::new();
                render_fields(value, "", &mut rows);
                format!(
                    "config version {} ({})\n{}",
                    text(value, "version"),
                    text(value, "sync"),
                    aligned(&rows)
                )
            }
            Shape::Messages => {
                let items = value.as_array().cloned().unwrap_or_default();
                if items.is_empty() {
                    return "no messages traced".into();
                }
                items
                    .iter()
                    .map(|m| {
                        format!(
                            "{}  {:<4}  {}  {} B  {}",
                            text(m, "at"),
                            text(m, "direction"),
                            text(m, "topic"),
                            text(m, "size"),
                            text(m, "summary")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            Shape::DynamicQr => format!(
                "transaction {} (order {}, {} rupiah, pending until {})\n{}",
                text(&value["transaction"], "id"),
                text(&value["transaction"], "order_ref"),
                text(&value["transaction"], "amount"),
                text(&value["transaction"], "expires_at"),
                text(value, "payload")
            ),
        },
    }
}

fn render_fields(value: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    if let Some(object) = value.as_object() {
        for (key, field) in object {
            let name = format!("{prefix}{key}");
            if prefix.is_empty() && key == "id" {
                continue; // already in the heading
            }
            if field.is_object() {
                render_fields(field, &format!("{name}."), out);
            } else {
                out.push((name, text(value, key)));
            }
        }
    }
}

fn aligned(rows: &[(String, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("  {k:<width$}  {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_one(kind: &str, value: &Value) -> String {
    let mut rows = Vec::new();
    render_fields(value, "", &mut rows);
    format!("{kind} {}\n{}", text(value, "id"), aligned(&rows))
}

fn render_list(kind: &str, value: &Value) -> String {
    let columns: &[&str] = match kind {
        "merchant" => &["id", "status", "name"],
        "outlet" => &["id", "merchant_id", "name"],
        "terminal" => &["id", "outlet_id", "label"],
        "command" => &["id", "status", "expires_at"],
        _ => &["id", "serial", "status", "terminal_id"],
    };
    let items = value["items"].as_array().cloned().unwrap_or_default();
    let mut lines: Vec<String> = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|c| text(item, c))
                .collect::<Vec<_>>()
                .join("  ")
        })
        .collect();
    if lines.is_empty() {
        lines.push(format!("no {kind}s"));
    }
    if let Some(next) = value["next_cursor"].as_str() {
        lines.push(format!("(more: --cursor {next})"));
    }
    lines.join("\n")
}

fn render_bindings(value: &Value) -> String {
    let items = value.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return "never bound".into();
    }
    items
        .iter()
        .map(|b| {
            format!(
                "{}  terminal {}  bound {}  unbound {}",
                text(b, "id"),
                text(b, "terminal_id"),
                text(b, "bound_at"),
                text(b, "unbound_at")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_issued(value: &Value) -> String {
    let device = &value["device"];
    let c = &value["credentials"];
    let rows = vec![
        ("Broker host".to_string(), text(c, "mqtt_host")),
        (
            "Broker port".to_string(),
            format!("{} (MQTT over TLS)", text(c, "mqtt_port")),
        ),
        ("Username".to_string(), text(c, "username")),
        ("Client id".to_string(), text(c, "client_id")),
        ("Secret".to_string(), text(c, "secret")),
        ("CA certificate".to_string(), text(c, "ca_certificate_path")),
        ("Topic prefix".to_string(), text(c, "topic_prefix")),
        ("Subscribe to".to_string(), text(c, "subscribe_filter")),
        ("Publish under".to_string(), text(c, "publish_prefix")),
    ];
    format!(
        "device {} (serial {}, model {})\n\nEnter these on the device. The secret is shown only now:\n{}",
        text(device, "id"),
        text(device, "serial"),
        text(device, "model"),
        aligned(&rows)
    )
}
