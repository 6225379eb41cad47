//! Topic routing: a trie of subscriptions keyed by topic level, and a trie of retained
//! messages. Routing a message walks only the levels of its topic (plus `+`/`#` branches), so
//! its cost does not grow with the number of connected devices or subscriptions elsewhere.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;

/// Identifies a session in the router (`d:<device id>` or `s:<client id>`).
pub(crate) type SessionKey = Arc<str>;

/// Subscribers at one node: a few at most (a device's filters are its own, so no node is
/// shared by many devices), so a vector is smaller than a map and as fast.
type Subscribers = Vec<(SessionKey, QoS)>;

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    plus: Option<Box<Node>>,
    /// Subscriptions whose filter ends here.
    exact: Subscribers,
    /// Subscriptions whose filter is this node's path followed by `/#`.
    hash: Subscribers,
}

fn upsert(subs: &mut Subscribers, key: &SessionKey, qos: QoS) {
    match subs.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = qos,
        None => subs.push((key.clone(), qos)),
    }
}

fn discard(subs: &mut Subscribers, key: &SessionKey) {
    subs.retain(|(k, _)| k != key);
    if subs.is_empty() {
        *subs = Vec::new();
    }
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.exact.is_empty()
            && self.hash.is_empty()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Router {
    root: Node,
}

impl Router {
    /// Adds or replaces `key`'s subscription to `filter` (a valid filter).
    pub(crate) fn subscribe(&mut self, filter: &str, key: &SessionKey, qos: QoS) {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            match level {
                "#" => {
                    upsert(&mut node.hash, key, qos);
                    return;
                }
                "+" => node = node.plus.get_or_insert_with(Default::default),
                _ => node = child_mut(&mut node.children, level),
            }
        }
        upsert(&mut node.exact, key, qos);
    }

    /// Removes `key`'s subscription to `filter`, pruning emptied branches.
    pub(crate) fn unsubscribe(&mut self, filter: &str, key: &SessionKey) {
        let levels: Vec<&str> = filter.split('/').collect();
        remove(&mut self.root, &levels, key);
    }

    /// Every session subscribed to a filter matching `topic`, with the highest granted QoS
    /// among its matching filters.
    pub(crate) fn route(&self, topic: &str) -> HashMap<SessionKey, QoS> {
        let levels: Vec<&str> = topic.split('/').collect();
        let mut out = HashMap::new();
        let dollar = topic.starts_with('$');
        collect(&self.root, &levels, 0, dollar, &mut out);
        out
    }
}

/// The child for `level`, created if missing (without allocating the key when it exists).
fn child_mut<'a, N: Default>(children: &'a mut HashMap<Box<str>, N>, level: &str) -> &'a mut N {
    if !children.contains_key(level) {
        children.insert(level.into(), N::default());
    }
    children
        .get_mut(level)
        .unwrap_or_else(|| unreachable!("inserted above"))
}

fn remove(node: &mut Node, levels: &[&str], key: &SessionKey) {
    match levels.split_first() {
        None => {
            discard(&mut node.exact, key);
        }
        Some((&"#", _)) => {
            discard(&mut node.hash, key);
        }
        Some((&"+", rest)) => {
            if let Some(child) = node.plus.as_mut() {
                remove(child, rest, key);
                if child.is_empty() {
                    node.plus = None;
                }
            }
        }
        Some((level, rest)) => {
            if let Some(child) = node.children.get_mut(*level) {
                remove(child, rest, key);
                if child.is_empty() {
                    node.children.remove(*level);
                }
            }
        }
    }
}

fn add(out: &mut HashMap<SessionKey, QoS>, subs: &Subscribers) {
    for (key, qos) in subs {
        let e = out.entry(key.clone()).or_insert(*qos);
        if (*qos as u8) > (*e as u8) {
            *e = *qos;
        }
    }
}

fn collect(
    node: &Node,
    levels: &[&str],
    depth: usize,
    dollar: bool,
    out: &mut HashMap<SessionKey, QoS>,
) {
    // Wildcards at the first level never match `$` topics (MQTT 3.1.1 §4.7.2).
    let wildcards = !(dollar && depth == 0);
    if wildcards {
        add(out, &node.hash);
    }
    let Some(level) = levels.get(depth) else {
        add(out, &node.exact);
        return;
    };
    if let Some(child) = node.children.get(*level) {
        collect(child, levels, depth + 1, dollar, out);
    }
    if wildcards && let Some(plus) = &node.plus {
        collect(plus, levels, depth + 1, dollar, out);
    }
}

/// A retained message.
#[derive(Debug, Clone)]
pub(crate) struct Retained {
    pub(crate) payload: Bytes,
    pub(crate) qos: QoS,
}

#[derive(Debug, Default)]
struct RetainedNode {
    children: HashMap<Box<str>, RetainedNode>,
    message: Option<Retained>,
}

/// Retained messages by topic, searchable by filter without scanning unrelated topics.
#[derive(Debug, Default)]
pub(crate) struct RetainedStore {
    root: RetainedNode,
    count: usize,
}

impl RetainedStore {
    /// Stores `message` for `topic`, or clears it when the payload is empty (MQTT 3.1.1
    /// §3.3.1.3).
    pub(crate) fn set(&mut self, topic: &str, message: Retained) {
        let levels: Vec<&str> = topic.split('/').collect();
        if message.payload.is_empty() {
            if clear(&mut self.root, &levels) {
                self.count -= 1;
            }
            return;
        }
        let mut node = &mut self.root;
        for level in levels {
            node = child_mut(&mut node.children, level);
        }
        if node.message.replace(message).is_none() {
            self.count += 1;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn contains(&self, topic: &str) -> bool {
        let mut node = &self.root;
        for level in topic.split('/') {
            match node.children.get(level) {
                Some(child) => node = child,
                None => return false,
            }
        }
        node.message.is_some()
    }

    /// Every retained message whose topic matches `filter` (a valid filter).
    pub(crate) fn matching(&self, filter: &str) -> Vec<(String, Retained)> {
        let levels: Vec<&str> = filter.split('/').collect();
        let mut out = Vec::new();
        let mut path = Vec::new();
        find(&self.root, &levels, &mut path, &mut out);
        out
    }
}

fn clear(node: &mut RetainedNode, levels: &[&str]) -> bool {
    match levels.split_first() {
        None => node.message.take().is_some(),
        Some((level, rest)) => {
            let Some(child) = node.children.get_mut(*level) else {
                return false;
            };
            let removed = clear(child, rest);
            if child.message.is_none() && child.children.is_empty() {
                node.children.remove(*level);
            }
            removed
        }
    }
}

fn find<'a>(
    node: &'a RetainedNode,
    levels: &[&str],
    path: &mut Vec<&'a str>,
    out: &mut Vec<(String, Retained)>,
) {
    let at_root = path.is_empty();
    match levels.split_first() {
        None => {
            if let Some(m) = &node.message {
                out.push((path.join("/"), m.clone()));
            }
        }
        Some((&"#", _)) => {
            // `a/#` matches `a` itself and everything below.
            if !at_root && let Some(m) = &node.message {
                out.push((path.join("/"), m.clone()));
            }
            for (name, child) in &node.children {
                if at_root && name.starts_with('$') {
                    continue;
                }
                path.push(name);
                find(child, levels, path, out);
                path.pop();
            }
        }
        Some((&"+", rest)) => {
            for (name, child) in &node.children {
                if at_root && name.starts_with('$') {
                    continue;
                }
                path.push(name);
                find(child, rest, path, out);
                path.pop();
            }
        }
        Some((level, rest)) => {
            if let Some((name, child)) = node.children.get_key_value(*level) {
                path.push(name);
                find(child, rest, path, out);
                path.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gema_acl::topic::matches;
    use proptest::prelude::*;

    fn key(s: &str) -> SessionKey {
        Arc::from(s)
    }

    #[test]
    fn routes_exact_plus_and_hash() {
        let mut r = Router::default();
        r.subscribe("devices/a/down/#", &key("d:a"), QoS::AtLeastOnce);
        r.subscribe("devices/+/up/#", &key("s:mon"), QoS::AtMostOnce);
        r.subscribe("#", &key("s:all"), QoS::AtMostOnce);
        let got = r.route("devices/a/down/announce");
        assert_eq!(got.len(), 2);
        assert_eq!(got[&key("d:a")], QoS::AtLeastOnce);
        let got = r.route("devices/b/up/x");
        assert!(got.contains_key(&key("s:mon")) && got.contains_key(&key("s:all")));
        assert!(r.route("$SYS/x").is_empty());
        r.unsubscribe("devices/a/down/#", &key("d:a"));
        r.unsubscribe("devices/+/up/#", &key("s:mon"));
        r.unsubscribe("#", &key("s:all"));
        assert!(r.root.is_empty());
    }

    #[test]
    fn retained_messages_are_found_by_filter_and_cleared_by_empty_payload() {
        let mut s = RetainedStore::default();
        let m = |p: &'static [u8]| Retained {
            payload: Bytes::from_static(p),
            qos: QoS::AtLeastOnce,
        };
        s.set("devices/a/down/config", m(b"1"));
        s.set("devices/b/down/config", m(b"2"));
        s.set("$SYS/x", m(b"3"));
        assert_eq!(s.len(), 3);
        let got = s.matching("devices/a/down/#");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "devices/a/down/config");
        assert_eq!(s.matching("#").len(), 2);
        assert_eq!(s.matching("+/+/down/config").len(), 2);
        s.set("devices/a/down/config", m(b""));
        assert_eq!(s.len(), 2);
        assert!(s.matching("devices/a/down/#").is_empty());
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("$s".to_owned()),
            Just(String::new())
        ]
    }

    fn filter() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![level(), Just("+".to_owned()), Just("#".to_owned())],
            1..4,
        )
        .prop_map(|l| {
            let end = l.iter().position(|x| x == "#").map_or(l.len(), |i| i + 1);
            l[..end].join("/")
        })
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..4).prop_map(|l| l.join("/"))
    }

    proptest! {
        #[test]
        fn the_trie_agrees_with_filter_matching(
            filters in prop::collection::vec(filter(), 1..8),
            topics in prop::collection::vec(topic(), 1..8),
        ) {
            let mut r = Router::default();
            let mut store = RetainedStore::default();
            for (i, f) in filters.iter().enumerate() {
                r.subscribe(f, &key(&i.to_string()), QoS::AtMostOnce);
            }
            for t in &topics {
                store.set(t, Retained { payload: Bytes::from_static(b"x"), qos: QoS::AtMostOnce });
                let routed = r.route(t);
                for (i, f) in filters.iter().enumerate() {
                    prop_assert_eq!(routed.contains_key(&key(&i.to_string())), matches(f, t), "{} {}", f, t);
                }
            }
            for f in &filters {
                let mut found: Vec<String> = store.matching(f).into_iter().map(|(t, _)| t).collect();
                found.sort();
                let mut expected: Vec<String> = topics.iter().filter(|t| matches(f, t)).cloned().collect();
                expected.sort();
                expected.dedup();
                prop_assert_eq!(found, expected, "{}", f);
            }
            for (i, f) in filters.iter().enumerate() {
                r.unsubscribe(f, &key(&i.to_string()));
            }
            prop_assert!(r.root.is_empty());
        }
    }
}
