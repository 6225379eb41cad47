//! The billing section's own navigation: its screens as tabs (customers, each to
//! [`customer`](crate::pages::customer); [`invoices`](crate::pages::invoices);
//! [`packages`](crate::pages::packages); the [`import`](crate::pages::billing)), shown to the
//! roles that may use each, and the query-string helper its screens' links share. Every
//! billing screen imports this module; it imports none of them.

use gema_gateway::auth::Action;

use crate::session::Session;

/// A link of the billing section's own navigation.
#[derive(Debug)]
pub struct Tab {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The billing section's screens: path, text key, and the action a role needs to see the
/// link (each screen's handler checks it again).
pub const TABS: [(&str, &str, Action); 4] = [
    (
        "/billing/customers",
        "billing.customers",
        Action::BillingRead,
    ),
    ("/billing/invoices", "invoice.title", Action::BillingRead),
    ("/billing/packages", "package.title", Action::BillingRead),
    (
        "/billing/import",
        "billing.tab_import",
        Action::BillingManage,
    ),
];

/// The billing section's navigation for this session (`billing_tabs.html`).
pub fn tabs(session: &Session) -> Vec<Tab> {
    let lang = session.prefs.lang;
    TABS.iter()
        .filter(|(_, _, action)| session.may(*action))
        .map(|(href, key, _)| Tab {
            href,
            label: lang.t(key),
            current: crate::frame::current(&session.path, href),
        })
        .collect()
}

/// `value` percent-encoded for a query string.
pub(crate) fn query_value(value: &str) -> String {
    serde_urlencoded::to_string([("", value)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_billing_tab_has_a_text() {
        for (_, key, _) in TABS {
            assert!(
                crate::i18n::TEXTS.iter().any(|(k, _, _)| *k == key),
                "{key} has no text"
            );
        }
    }

    #[test]
    fn a_query_value_is_percent_encoded() {
        assert_eq!(query_value("Budi & Sari"), "Budi+%26+Sari");
        assert_eq!(query_value("cus_01"), "cus_01");
    }
}
