//! Roles, actions and THE permission matrix (role × action): the one place that says who may
//! do what. The admin API maps each route to an [`Action`]; this module decides.

use std::fmt;

use serde::Serialize;

/// Roles of operators (admin users and API tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    Admin,
    Finance,
    Ops,
    Support,
    Viewer,
}

/// Roles of a merchant's own staff; they only ever see that merchant's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MerchantRole {
    Owner,
    Finance,
    Ops,
    Viewer,
}

impl AdminRole {
    pub const ALL: [AdminRole; 5] = [
        AdminRole::Admin,
        AdminRole::Finance,
        AdminRole::Ops,
        AdminRole::Support,
        AdminRole::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Admin => "admin",
            AdminRole::Finance => "finance",
            AdminRole::Ops => "ops",
            AdminRole::Support => "support",
            AdminRole::Viewer => "viewer",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == value)
    }
}

impl MerchantRole {
    pub const ALL: [MerchantRole; 4] = [
        MerchantRole::Owner,
        MerchantRole::Finance,
        MerchantRole::Ops,
        MerchantRole::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MerchantRole::Owner => "owner",
            MerchantRole::Finance => "finance",
            MerchantRole::Ops => "ops",
            MerchantRole::Viewer => "viewer",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == value)
    }
}

/// A caller's role: an operator role, or a merchant role bound to one merchant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin(AdminRole),
    Merchant(MerchantRole),
}

impl Role {
    /// Every role, operators first.
    pub fn all() -> Vec<Role> {
        AdminRole::ALL
            .into_iter()
            .map(Role::Admin)
            .chain(MerchantRole::ALL.into_iter().map(Role::Merchant))
            .collect()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Admin(r) => write!(f, "admin:{}", r.as_str()),
            Role::Merchant(r) => write!(f, "merchant:{}", r.as_str()),
        }
    }
}

/// What a request does. Listing, reading and writing are separate actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    MerchantList,
    MerchantRead,
    MerchantWrite,
    /// Approve, reject, suspend.
    MerchantReview,
    OutletList,
    OutletRead,
    OutletWrite,
    TerminalList,
    TerminalRead,
    TerminalWrite,
    DeviceList,
    DeviceRead,
    DeviceWrite,
    /// Bind and unbind.
    DeviceBind,
    /// Rotate and revoke device secrets.
    DeviceCredentials,
    /// Change a device's desired config, push it again.
    DeviceConfigure,
    /// Send a device a command (reboot, firmware update, …).
    DeviceCommand,
    /// A device's MQTT message trace (support diagnostics).
    DeviceDiagnostics,
    TransactionList,
    TransactionRead,
    /// Create a transaction or a dynamic QR (money is about to move).
    TransactionCreate,
    /// Expiry sweep, announcement retry.
    TransactionOperate,
    LedgerRead,
    UserList,
    UserRead,
    UserWrite,
    AuditRead,
    ApiTokenList,
    /// Create and revoke API tokens.
    ApiTokenWrite,
    /// A caller's own profile and sessions; every authenticated caller.
    OwnSession,
    /// The gateway nodes and their heartbeats.
    NodeList,
    /// Settlement batches, adjustments, balances and payout exports (merchant users: their own).
    SettlementRead,
    /// Generating batches and moving them through their lifecycle, adjustments, payout
    /// settings and merchant bank details.
    SettlementWrite,
    /// Reconciliation runs and their rows.
    ReconciliationRead,
    /// Importing a provider report and running a reconciliation.
    ReconciliationWrite,
    /// Export jobs: create, follow, download.
    ExportJobs,
    /// The dashboard summary (merchant users: their own).
    DashboardRead,
    /// Billing: packages, customers, invoices, their history (merchant users: their own).
    BillingRead,
    /// Adding customers and editing them (merchant users: phone and discount only).
    BillingCustomerWrite,
    /// Marking invoices paid and unpaid, issuing an invoice's QRIS.
    BillingPay,
    /// Packages, isolation, the CSV import, customer data exports, running the invoice
    /// generation by hand: the seed's superadmin work.
    BillingManage,
    /// A merchant's billing settings: business name, logo, bank details, receipt fields.
    BillingSettings,
    /// Billing finance: collected and outstanding, revenue, the detail table and its export.
    BillingFinance,
    /// WhatsApp: the outbox and each message's log, the counts, a merchant's sender (never
    /// its token), texts and notification settings (merchant users: their own).
    WhatsAppRead,
    /// Writing to customers on WhatsApp: one number or many (merchant users: as their
    /// merchant).
    WhatsAppSend,
    /// Retrying a failed or uncertain message, cancelling a pending one.
    WhatsAppOperate,
    /// A merchant's own WhatsApp sender, its texts and its notification settings.
    WhatsAppManage,
}

impl Action {
    /// Every action, in the order the enum declares them (the console's role table lists
    /// them so). A test holds this list to the enum.
    pub const ALL: [Action; 47] = [
        Action::MerchantList,
        Action::MerchantRead,
        Action::MerchantWrite,
        Action::MerchantReview,
        Action::OutletList,
        Action::OutletRead,
        Action::OutletWrite,
        Action::TerminalList,
        Action::TerminalRead,
        Action::TerminalWrite,
        Action::DeviceList,
        Action::DeviceRead,
        Action::DeviceWrite,
        Action::DeviceBind,
        Action::DeviceCredentials,
        Action::DeviceConfigure,
        Action::DeviceCommand,
        Action::DeviceDiagnostics,
        Action::TransactionList,
        Action::TransactionRead,
        Action::TransactionCreate,
        Action::TransactionOperate,
        Action::LedgerRead,
        Action::UserList,
        Action::UserRead,
        Action::UserWrite,
        Action::AuditRead,
        Action::ApiTokenList,
        Action::ApiTokenWrite,
        Action::OwnSession,
        Action::NodeList,
        Action::SettlementRead,
        Action::SettlementWrite,
        Action::ReconciliationRead,
        Action::ReconciliationWrite,
        Action::ExportJobs,
        Action::DashboardRead,
        Action::BillingRead,
        Action::BillingCustomerWrite,
        Action::BillingPay,
        Action::BillingManage,
        Action::BillingSettings,
        Action::BillingFinance,
        Action::WhatsAppRead,
        Action::WhatsAppSend,
        Action::WhatsAppOperate,
        Action::WhatsAppManage,
    ];

    /// A stable name, used in audit rows.
    pub fn name(self) -> &'static str {
        match self {
            Action::MerchantList => "merchant.list",
            Action::MerchantRead => "merchant.read",
            Action::MerchantWrite => "merchant.write",
            Action::MerchantReview => "merchant.review",
            Action::OutletList => "outlet.list",
            Action::OutletRead => "outlet.read",
            Action::OutletWrite => "outlet.write",
            Action::TerminalList => "terminal.list",
            Action::TerminalRead => "terminal.read",
            Action::TerminalWrite => "terminal.write",
            Action::DeviceList => "device.list",
            Action::DeviceRead => "device.read",
            Action::DeviceWrite => "device.write",
            Action::DeviceBind => "device.bind",
            Action::DeviceCredentials => "device.credentials",
            Action::DeviceConfigure => "device.configure",
            Action::DeviceCommand => "device.command",
            Action::DeviceDiagnostics => "device.diagnostics",
            Action::TransactionList => "transaction.list",
            Action::TransactionRead => "transaction.read",
            Action::TransactionCreate => "transaction.create",
            Action::TransactionOperate => "transaction.operate",
            Action::LedgerRead => "ledger.read",
            Action::UserList => "user.list",
            Action::UserRead => "user.read",
            Action::UserWrite => "user.write",
            Action::AuditRead => "audit.read",
            Action::ApiTokenList => "api_token.list",
            Action::ApiTokenWrite => "api_token.write",
            Action::OwnSession => "session.own",
            Action::NodeList => "node.list",
            Action::SettlementRead => "settlement.read",
            Action::SettlementWrite => "settlement.write",
            Action::ReconciliationRead => "reconciliation.read",
            Action::ReconciliationWrite => "reconciliation.write",
            Action::ExportJobs => "export.jobs",
            Action::DashboardRead => "dashboard.read",
            Action::BillingRead => "billing.read",
            Action::BillingCustomerWrite => "billing.customer_write",
            Action::BillingPay => "billing.pay",
            Action::BillingManage => "billing.manage",
            Action::BillingSettings => "billing.settings",
            Action::BillingFinance => "billing.finance",
            Action::WhatsAppRead => "whatsapp.read",
            Action::WhatsAppSend => "whatsapp.send",
            Action::WhatsAppOperate => "whatsapp.operate",
            Action::WhatsAppManage => "whatsapp.manage",
        }
    }
}

/// THE matrix. Operators: `admin` may do everything; everyone may list and read the
/// registry and payments; registry writes belong to ops; device credentials to ops;
/// money (transactions, ledger, settlement, reconciliation, exports) to finance; support may retry announcements, send device
/// commands, and read the audit log; every operator may read a device's message trace and
/// the node list. Merchant users are read-only over their own merchant's rows; the ledger is for
/// owner and finance, and so are their settlement batches. Billing (the seed's rules): every
/// role reads its billing; ops adds and edits customers and marks invoices; finance marks
/// invoices and reads billing finance; packages, isolation, the import and customer exports
/// are ops's (the seed's superadmin). Merchant owners and ops add customers (phone and
/// discount edits only) and mark invoices, owners and finance see their billing finance, and
/// owners keep their receipt settings. WhatsApp: ops runs it (reads, writes to customers,
/// retries and cancels, senders, texts, settings) and finance reads it; merchant owners do
/// all of that for their merchant, their finance and ops staff read and write to customers;
/// merchant viewers and operator support and viewers do not see it (messages are customers'
/// numbers and words). Users and API tokens are admin only.
pub fn permits(role: Role, action: Action) -> bool {
    use Action::*;
    use AdminRole as A;
    use MerchantRole as M;
    match role {
        Role::Admin(A::Admin) => true,
        Role::Admin(role) => match action {
            MerchantList | MerchantRead | OutletList | OutletRead | TerminalList | TerminalRead
            | DeviceList | DeviceRead | DeviceDiagnostics | TransactionList | TransactionRead
            | OwnSession | NodeList | DashboardRead | BillingRead => true,
            MerchantWrite | MerchantReview | OutletWrite | TerminalWrite | DeviceWrite
            | DeviceBind | DeviceCredentials | DeviceConfigure => role == A::Ops,
            DeviceCommand => matches!(role, A::Ops | A::Support),
            TransactionCreate | LedgerRead | SettlementRead | SettlementWrite
            | ReconciliationRead | ReconciliationWrite | ExportJobs => role == A::Finance,
            TransactionOperate => matches!(role, A::Finance | A::Support),
            AuditRead => role == A::Support,
            BillingCustomerWrite | BillingManage | BillingSettings => role == A::Ops,
            BillingPay => matches!(role, A::Ops | A::Finance),
            BillingFinance => role == A::Finance,
            WhatsAppRead => matches!(role, A::Ops | A::Finance),
            WhatsAppSend | WhatsAppOperate | WhatsAppManage => role == A::Ops,
            UserList | UserRead | UserWrite | ApiTokenList | ApiTokenWrite => false,
        },
        Role::Merchant(role) => match action {
            MerchantRead | OutletList | OutletRead | TerminalList | TerminalRead | DeviceList
            | DeviceRead | TransactionList | TransactionRead | OwnSession | DashboardRead
            | BillingRead => true,
            LedgerRead | SettlementRead | BillingFinance => matches!(role, M::Owner | M::Finance),
            BillingCustomerWrite => matches!(role, M::Owner | M::Ops),
            BillingPay => matches!(role, M::Owner | M::Ops | M::Finance),
            BillingSettings => role == M::Owner,
            WhatsAppRead | WhatsAppSend => matches!(role, M::Owner | M::Finance | M::Ops),
            WhatsAppOperate | WhatsAppManage => role == M::Owner,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_of_actions_is_the_enum() {
        // Discriminants run 0, 1, 2, … in declaration order: the list holds each once, in
        // order, up to the last variant. A variant added before the end shifts the rest and
        // fails here; one added after `WhatsAppManage` must move this test's last variant.
        for (i, action) in Action::ALL.iter().enumerate() {
            assert_eq!(*action as usize, i, "{}", action.name());
        }
        assert_eq!(Action::ALL.len(), Action::WhatsAppManage as usize + 1);
        let names: std::collections::HashSet<_> = Action::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(names.len(), Action::ALL.len());
    }

    #[test]
    fn role_names_round_trip() {
        for role in AdminRole::ALL {
            assert_eq!(AdminRole::parse(role.as_str()), Some(role));
        }
        for role in MerchantRole::ALL {
            assert_eq!(MerchantRole::parse(role.as_str()), Some(role));
        }
        assert_eq!(AdminRole::parse("owner"), None);
        assert_eq!(MerchantRole::parse("admin"), None);
    }

    #[test]
    fn sensitive_actions_belong_to_few_roles() {
        let who = |action| {
            Role::all()
                .into_iter()
                .filter(|r| permits(*r, action))
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(who(Action::DeviceCredentials), ["admin:admin", "admin:ops"]);
        assert_eq!(
            who(Action::LedgerRead),
            [
                "admin:admin",
                "admin:finance",
                "merchant:owner",
                "merchant:finance"
            ]
        );
        assert_eq!(
            who(Action::TransactionCreate),
            ["admin:admin", "admin:finance"]
        );
        assert_eq!(who(Action::UserWrite), ["admin:admin"]);
        assert_eq!(
            who(Action::WhatsAppManage),
            ["admin:admin", "admin:ops", "merchant:owner"]
        );
        assert_eq!(
            who(Action::WhatsAppSend),
            [
                "admin:admin",
                "admin:ops",
                "merchant:owner",
                "merchant:finance",
                "merchant:ops"
            ]
        );
        assert_eq!(
            who(Action::MerchantList).len(),
            5,
            "merchant users never list merchants"
        );
    }
}
