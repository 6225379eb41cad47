//! MQTT 3.1.1 topic names and topic filters: validation, matching, and whether one filter
//! covers another. Pure string logic, shared by the ACL and the broker's router so both agree
//! on what a filter means.

/// Longest topic name or filter accepted (MQTT strings are at most 65,535 bytes).
pub const MAX_TOPIC_LEN: usize = 65_535;

/// Why a string is not a valid topic name or topic filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    Empty,
    TooLong,
    /// U+0000 is forbidden in topics (MQTT 3.1.1 §4.7.3).
    NulCharacter,
    /// A topic name (what is published to) must not contain `+` or `#`.
    WildcardInTopicName,
    /// `+` and `#` must occupy a whole level, and `#` must be the last level.
    MisplacedWildcard,
}

impl core::fmt::Display for TopicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            TopicError::Empty => "topic is empty",
            TopicError::TooLong => "topic is too long",
            TopicError::NulCharacter => "topic contains U+0000",
            TopicError::WildcardInTopicName => "topic name contains a wildcard",
            TopicError::MisplacedWildcard => "wildcard does not occupy a whole level",
        })
    }
}

impl std::error::Error for TopicError {}

fn common_checks(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    if s.contains('\0') {
        return Err(TopicError::NulCharacter);
    }
    Ok(())
}

/// Checks a topic name, as carried by PUBLISH and Last Will.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    common_checks(topic)?;
    if topic.contains(['+', '#']) {
        return Err(TopicError::WildcardInTopicName);
    }
    Ok(())
}

/// Checks a topic filter, as carried by SUBSCRIBE and UNSUBSCRIBE.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    common_checks(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        match level {
            "+" => {}
            "#" if is_last => {}
            _ if level.contains(['+', '#']) => return Err(TopicError::MisplacedWildcard),
            "#" => return Err(TopicError::MisplacedWildcard),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `filter` matches `topic`. Both are assumed valid. Per MQTT 3.1.1 §4.7.2 a filter
/// starting with a wildcard never matches a topic whose first level starts with `$`, and
/// `a/#` also matches `a`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic matched by `filter` is also matched by `pattern` (both valid filters).
/// This is what a subscription must satisfy against an ACL pattern: checking the filter
/// string with [`matches()`] would let `+` in a subscription pass as if it were a literal.
pub fn covers(pattern: &str, filter: &str) -> bool {
    let filter_first = filter.split('/').next().unwrap_or_default();
    let pattern_first = pattern.split('/').next().unwrap_or_default();
    if filter_first.starts_with('$') && pattern_first != filter_first {
        return false;
    }
    let mut p = pattern.split('/');
    let mut f = filter.split('/');
    loop {
        match (p.next(), f.next()) {
            // `a/#` matches `a` too, so a filter that ends where the pattern has its final
            // `#` is covered.
            (Some("#"), _) => return true,
            (Some("+"), Some(fl)) if fl != "#" => {}
            (Some(pl), Some(fl)) if pl != "+" && fl != "+" && fl != "#" && pl == fl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_validated_level_by_level() {
        for ok in ["#", "+", "a/+/b", "a/#", "+/+", "/", "a//b", "$SYS/#"] {
            assert_eq!(validate_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["a#", "a/#/b", "a+/b", "#/a", "a/b#"] {
            assert_eq!(
                validate_filter(bad),
                Err(TopicError::MisplacedWildcard),
                "{bad}"
            );
        }
        assert_eq!(validate_filter(""), Err(TopicError::Empty));
        assert_eq!(validate_filter("a\0"), Err(TopicError::NulCharacter));
    }

    #[test]
    fn topic_names_have_no_wildcards() {
        assert_eq!(validate_topic_name("a/b"), Ok(()));
        assert_eq!(
            validate_topic_name("a/+"),
            Err(TopicError::WildcardInTopicName)
        );
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
    }

    #[test]
    fn matching_follows_the_spec() {
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("+", ""));
        assert!(!matches("a/+", "a"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
    }

    #[test]
    fn coverage_treats_subscription_wildcards_as_wildcards() {
        assert!(covers("devices/+/up/#", "devices/a/up/x"));
        assert!(covers("devices/+/up/#", "devices/+/up/#"));
        assert!(covers("a/#", "a"));
        assert!(covers("#", "#"));
        assert!(!covers("devices/a/up/#", "devices/+/up/#"));
        assert!(!covers("devices/+/up/#", "devices/#"));
        assert!(!covers("a/+", "a/#"));
        assert!(!covers("a/+/#", "a/#"));
        assert!(!covers("#", "$SYS/#"));
        assert!(covers("$SYS/#", "$SYS/broker/x"));
    }
}
