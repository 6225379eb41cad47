//! Subscription billing that merchants run for their own customers (the billing seed's
//! packages, customers and prepaid monthly invoices) and that operators run across
//! merchants: invoices made the day before the billing day, paid by hand or by QRIS at the
//! merchant's soundbox, isolation of non-payers with a signed webhook to the merchant's
//! network, the CSV import, receipts and billing finance.
//!
//! The daily run (once per cluster, on the `billing-sweep` lease): at `generate_time`
//! Asia/Jakarta on day D, every active customer whose billing day is D + 1 gets the invoice
//! for the month after D + 1's month, due on D + 1 (prepaid). Billing days are 1–28, so
//! the runs on the 28th to the 30th/31st find nobody; a run missed while every node was
//! down is caught up (up to [`CATCH_UP_DAYS`] back). Re-running a date creates nothing new
//! (one invoice per customer and period, unique in the database).
//!
//! An invoice's QRIS is an ordinary dynamic QRIS transaction whose order reference starts
//! with [`INVOICE_ORDER_PREFIX`]; the payment path wakes billing when one is paid, and the
//! sweep finds any wake-up that was lost (a crash between the two commits).

use std::sync::Arc;
use std::time::Duration;

use gema_store::Store;
use gema_store::billing::{
    BillingWebhook, Customer, CustomerEvent, CustomerFilter, CustomerPatch, CustomerStatus,
    Invoice, InvoiceEvent, InvoiceFilter, InvoiceStatus, ManualPayment, NewCustomer, NewInvoice,
    NewPackage, Package, PackagePatch, Paid, PaymentMethod, QrisSettled,
};
use gema_store::{Page, PageRequest, Transaction};
use time::{Date, Month, OffsetDateTime};
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::credentials;
use crate::error::{GatewayError, GatewayResult};
use crate::jakarta::{date_label, jakarta_time, period_label, rupiah};
use crate::payments::{INVOICE_ORDER_PREFIX, Payments, providers};
use crate::settlement::JAKARTA;
use crate::validate;
use crate::whatsapp::WhatsApp;

pub mod finance;
pub mod import;
pub mod receipts;

/// How far back a missed daily run is caught up.
pub const CATCH_UP_DAYS: i64 = 31;
/// The most rupiah a package may cost.
const MAX_PRICE: i64 = 1_000_000_000;
/// Isolation webhooks delivered per sweep.
const WEBHOOK_BATCH: i64 = 32;

/// Billing's settings (`[billing]`).
#[derive(Debug, Clone)]
pub struct BillingSettings {
    /// When the daily invoice run happens, Asia/Jakarta (`HH:MM`, default 06:00).
    pub generate_time: (u8, u8),
    /// How often the node holding the billing lease checks for the daily run, delivers due
    /// isolation webhooks and looks for paid invoice QRIS it was not woken for.
    pub sweep_interval: Duration,
    /// The first webhook retry's delay; doubling up to an hour, given up after
    /// `webhook_attempts`.
    pub webhook_retry_base: Duration,
    pub webhook_attempts: u32,
    /// One webhook request's time limit.
    pub webhook_timeout: Duration,
    /// The largest customer CSV the import takes.
    pub import_max_bytes: usize,
    /// The largest logo a merchant may upload.
    pub logo_max_bytes: usize,
    /// How long an invoice's QRIS stays payable.
    pub qris_ttl_secs: u64,
}

impl Default for BillingSettings {
    fn default() -> Self {
        BillingSettings {
            generate_time: (6, 0),
            sweep_interval: Duration::from_secs(5),
            webhook_retry_base: Duration::from_secs(10),
            webhook_attempts: 12,
            webhook_timeout: Duration::from_secs(10),
            import_max_bytes: 5 * 1024 * 1024,
            logo_max_bytes: 256 * 1024,
            qris_ttl_secs: 24 * 3600,
        }
    }
}

/// The billing service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Billing {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: Arc<BillingSettings>,
    payments: Payments,
    /// Isolation notices and receipts.
    whatsapp: WhatsApp,
    node_id: Arc<str>,
    http: reqwest::Client,
    /// The payment path's wake-ups, taken by [`Billing::run`].
    paid: Arc<std::sync::Mutex<Option<mpsc::Receiver<String>>>>,
}

/// Who issues the QRIS a pay page shows, in the invoice's history.
pub const PAY_PAGE_ACTOR: &str = "pay-page";

/// What the public pay page of an invoice shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayPage {
    /// Paid: the page sends the visitor to the receipt.
    Paid,
    Unpaid(Box<UnpaidInvoice>),
}

/// An unpaid invoice as its pay page shows it; the texts made here, escaping left to the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpaidInvoice {
    pub business_name: String,
    pub customer_name: String,
    pub package: String,
    /// `Desember 2026`.
    pub period: String,
    /// `Rp 25.000`.
    pub total: String,
    /// `5 Desember 2026`.
    pub due_date: String,
    pub bank_details: Option<String>,
    /// `None` when the merchant has no terminal with a static QRIS.
    pub qris: Option<PayQris>,
}

/// The QRIS to scan for an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayQris {
    /// The dynamic QRIS payload (the QR code's content).
    pub payload: String,
    /// When it stops being accepted, in Asia/Jakarta.
    pub expires_at: String,
}

/// A new package.
#[derive(Debug, Clone)]
pub struct PackageInput {
    pub name: String,
    pub speed: Option<String>,
    pub description: Option<String>,
    pub price: i64,
    pub active: Option<bool>,
}

/// A package's changes; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct PackageChanges {
    pub name: Option<String>,
    pub speed: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub price: Option<i64>,
    pub active: Option<bool>,
}

/// A new customer, as typed in.
#[derive(Debug, Clone)]
pub struct CustomerInput {
    pub merchant_id: String,
    pub package_id: String,
    pub name: String,
    pub phone: String,
    pub nik: Option<String>,
    pub address: Option<String>,
    pub billing_day: i64,
    pub discount: Option<i64>,
    /// `YYYY-MM-DD`; today (Jakarta) when absent.
    pub register_date: Option<String>,
    pub notes: Option<String>,
}

/// A customer's changes; `None` keeps a field, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct CustomerChanges {
    pub version: Option<i64>,
    pub package_id: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub nik: Option<Option<String>>,
    pub address: Option<Option<String>>,
    pub billing_day: Option<i64>,
    pub discount: Option<i64>,
    pub register_date: Option<String>,
    pub notes: Option<Option<String>>,
}

impl CustomerChanges {
    /// The first field a merchant user may not change (they change phone and discount).
    pub fn beyond_merchant_edits(&self) -> Option<&'static str> {
        [
            ("package_id", self.package_id.is_some()),
            ("name", self.name.is_some()),
            ("nik", self.nik.is_some()),
            ("address", self.address.is_some()),
            ("billing_day", self.billing_day.is_some()),
            ("register_date", self.register_date.is_some()),
            ("notes", self.notes.is_some()),
        ]
        .into_iter()
        .find_map(|(field, set)| set.then_some(field))
    }
}

/// What a run of the invoice generation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationReport {
    /// The run's Jakarta date.
    pub run_date: Date,
    /// The customers' billing date (the day after).
    pub billing_date: Date,
    /// The prepaid month, `YYYY-MM`; `None` when the billing date is past the 28th (no
    /// customer is billed on the 29th, 30th or 31st).
    pub period: Option<String>,
    /// Invoices created now (customers who had theirs already are not counted).
    pub created: u64,
}

/// A customer's history: status changes and edits, and the isolation webhooks.
#[derive(Debug, Clone)]
pub struct CustomerHistory {
    pub events: Vec<CustomerEvent>,
    pub webhooks: Vec<BillingWebhook>,
}

/// The day's run: generation plus automatic isolation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyRun {
    pub generation: GenerationReport,
    pub isolated: u64,
}

pub use crate::jakarta::iso_date;

/// A `YYYY-MM-DD` input.
pub fn parse_date(field: &'static str, value: &str) -> GatewayResult<Date> {
    let bad = || GatewayError::invalid(field, "is a date YYYY-MM-DD");
    let parts: Vec<&str> = value.trim().split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let year: i32 = validate::fixed_digits(y, 4).ok_or_else(bad)?;
    let month: u8 = validate::fixed_digits(m, 2).ok_or_else(bad)?;
    let day: u8 = validate::fixed_digits(d, 2).ok_or_else(bad)?;
    let month = Month::try_from(month).map_err(|_| bad())?;
    Date::from_calendar_date(year, month, day).map_err(|_| bad())
}

/// A `YYYY-MM` input.
pub fn parse_period(field: &'static str, value: &str) -> GatewayResult<String> {
    let bad = || GatewayError::invalid(field, "is a month YYYY-MM");
    let (y, m) = value.trim().split_once('-').ok_or_else(bad)?;
    let year: i32 = validate::fixed_digits(y, 4).ok_or_else(bad)?;
    let month: u8 = validate::fixed_digits(m, 2).ok_or_else(bad)?;
    if !(1..=12).contains(&month) || year < 1970 {
        return Err(bad());
    }
    Ok(format!("{year:04}-{month:02}"))
}

/// The month after `date`'s month, `YYYY-MM`: the period an invoice billed on `date` pays.
pub fn next_period(date: Date) -> String {
    let (year, month) = match date.month() {
        Month::December => (date.year() + 1, 1),
        month => (date.year(), u8::from(month) + 1),
    };
    format!("{year:04}-{month:02}")
}

/// The run's plan for Jakarta date `run_date`: the billing date (the day after) and, when
/// that day is a billing day (1–28), the prepaid period.
pub fn plan(run_date: Date) -> (Date, Option<String>) {
    let billing_date = run_date.next_day().unwrap_or(run_date);
    let period = (billing_date.day() <= 28).then(|| next_period(billing_date));
    (billing_date, period)
}

fn new_receipt_token() -> String {
    credentials::generate_device_secret().expose().to_owned()
}

fn day(field: &'static str, value: i64) -> GatewayResult<i64> {
    if (1..=28).contains(&value) {
        Ok(value)
    } else {
        Err(GatewayError::invalid(
            field,
            "is a day of the month from 1 to 28",
        ))
    }
}

fn money(field: &'static str, value: i64) -> GatewayResult<i64> {
    if (0..=MAX_PRICE).contains(&value) {
        Ok(value)
    } else {
        Err(GatewayError::invalid(
            field,
            format!("is whole rupiah from 0 to {MAX_PRICE}"),
        ))
    }
}

/// A NIK (Indonesian identity number): 16 digits.
pub fn nik(field: &'static str, value: Option<&str>) -> GatewayResult<Option<String>> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.len() != 16 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GatewayError::invalid(field, "is a NIK: 16 digits"));
    }
    Ok(Some(value.to_owned()))
}

impl Billing {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: BillingSettings,
        payments: Payments,
        whatsapp: WhatsApp,
        node_id: String,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(settings.webhook_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let (wake, paid) = mpsc::channel(1024);
        payments.on_invoice_paid(wake);
        Billing {
            store,
            clock,
            settings: Arc::new(settings),
            payments,
            whatsapp,
            node_id: node_id.into(),
            http,
            paid: Arc::new(std::sync::Mutex::new(Some(paid))),
        }
    }

    pub fn settings(&self) -> &BillingSettings {
        &self.settings
    }

    /// Today in Asia/Jakarta.
    pub fn today(&self) -> Date {
        self.clock.now_utc().to_offset(JAKARTA).date()
    }

    // Packages.

    pub async fn create_package(&self, input: PackageInput) -> GatewayResult<Package> {
        let package = self
            .store
            .create_package(NewPackage {
                name: validate::text("name", &input.name, 100)?,
                speed: validate::optional_text("speed", input.speed.as_deref(), 50)?,
                description: validate::optional_text(
                    "description",
                    input.description.as_deref(),
                    1000,
                )?,
                price: money("price", input.price)?,
                active: input.active.unwrap_or(true),
            })
            .await?;
        tracing::info!(package_id = %package.id, price = package.price, "package created");
        Ok(package)
    }

    pub async fn packages(&self, include_inactive: bool) -> GatewayResult<Vec<Package>> {
        Ok(self.store.list_packages(include_inactive).await?)
    }

    pub async fn package(&self, id: &str) -> GatewayResult<Package> {
        Ok(self.store.get_package(id).await?)
    }

    pub async fn update_package(
        &self,
        id: &str,
        changes: PackageChanges,
    ) -> GatewayResult<Package> {
        let patch = PackagePatch {
            name: changes
                .name
                .map(|n| validate::text("name", &n, 100))
                .transpose()?,
            speed: changes
                .speed
                .map(|s| validate::optional_text("speed", s.as_deref(), 50))
                .transpose()?,
            description: changes
                .description
                .map(|d| validate::optional_text("description", d.as_deref(), 1000))
                .transpose()?,
            price: changes.price.map(|p| money("price", p)).transpose()?,
            active: changes.active,
        };
        Ok(self.store.update_package(id, patch).await?)
    }

    pub async fn delete_package(&self, id: &str) -> GatewayResult<()> {
        Ok(self.store.delete_package(id).await?)
    }

    // Customers.

    #[tracing::instrument(skip_all, fields(merchant_id = %input.merchant_id))]
    pub async fn create_customer(
        &self,
        input: CustomerInput,
        actor: &str,
    ) -> GatewayResult<Customer> {
        let register_date = match input.register_date.as_deref() {
            Some(date) => parse_date("register_date", date)?,
            None => self.today(),
        };
        let new = NewCustomer {
            merchant_id: input.merchant_id,
            package_id: validate::code("package_id", &input.package_id, 64)?,
            name: validate::text("name", &input.name, 200)?,
            phone: validate::wa_phone("phone", &input.phone)?,
            nik: nik("nik", input.nik.as_deref())?,
            address: validate::optional_text("address", input.address.as_deref(), 500)?,
            billing_day: day("billing_day", input.billing_day)?,
            discount: money("discount", input.discount.unwrap_or(0))?,
            register_date: iso_date(register_date),
            notes: validate::optional_text("notes", input.notes.as_deref(), 2000)?,
        };
        let customer = self.store.create_customer(new, actor).await?;
        tracing::info!(customer_id = %customer.id, "customer created");
        Ok(customer)
    }

    pub async fn customer(&self, id: &str) -> GatewayResult<Customer> {
        Ok(self.store.get_customer(id).await?)
    }

    pub async fn customers(
        &self,
        filter: CustomerFilter,
        page: &PageRequest,
    ) -> GatewayResult<Page<Customer>> {
        if let Some(day_filter) = filter.billing_day {
            day("billing_day", day_filter)?;
        }
        Ok(self.store.list_customers(&filter, page).await?)
    }

    #[tracing::instrument(skip_all, fields(customer_id = id))]
    pub async fn update_customer(
        &self,
        id: &str,
        changes: CustomerChanges,
        actor: &str,
    ) -> GatewayResult<Customer> {
        let patch = CustomerPatch {
            package_id: changes
                .package_id
                .map(|p| validate::code("package_id", &p, 64))
                .transpose()?,
            name: changes
                .name
                .map(|n| validate::text("name", &n, 200))
                .transpose()?,
            phone: changes
                .phone
                .map(|p| validate::wa_phone("phone", &p))
                .transpose()?,
            nik: changes.nik.map(|n| nik("nik", n.as_deref())).transpose()?,
            address: changes
                .address
                .map(|a| validate::optional_text("address", a.as_deref(), 500))
                .transpose()?,
            billing_day: changes
                .billing_day
                .map(|d| day("billing_day", d))
                .transpose()?,
            discount: changes.discount.map(|d| money("discount", d)).transpose()?,
            register_date: changes
                .register_date
                .map(|d| parse_date("register_date", &d).map(iso_date))
                .transpose()?,
            notes: changes
                .notes
                .map(|n| validate::optional_text("notes", n.as_deref(), 2000))
                .transpose()?,
        };
        Ok(self
            .store
            .update_customer(id, changes.version, patch, actor)
            .await?)
    }

    /// Isolates, re-activates or stops a customer (operators; every change is history, and
    /// into or out of isolation the merchant's webhook is queued).
    #[tracing::instrument(skip_all, fields(customer_id = id, status = status.as_str()))]
    pub async fn set_customer_status(
        &self,
        id: &str,
        status: CustomerStatus,
        reason: Option<&str>,
        actor: &str,
    ) -> GatewayResult<Customer> {
        let reason = validate::optional_text("reason", reason, 500)?;
        let before = self.store.get_customer(id).await?.status;
        let customer = self
            .store
            .set_customer_status(id, status, reason.as_deref(), actor)
            .await?;
        tracing::info!("customer status set");
        if before != CustomerStatus::Isolated {
            self.announce_isolation(&customer).await;
        }
        Ok(customer)
    }

    pub async fn customer_history(&self, id: &str) -> GatewayResult<CustomerHistory> {
        self.store.get_customer(id).await?;
        Ok(CustomerHistory {
            events: self.store.customer_events(id).await?,
            webhooks: self.store.customer_webhooks(id).await?,
        })
    }

    // Invoices.

    /// The invoice generation of Jakarta date `run_date` (see the module docs), for every
    /// merchant or one. Idempotent.
    #[tracing::instrument(skip_all, fields(run_date = %iso_date(run_date)))]
    pub async fn generate(
        &self,
        run_date: Date,
        merchant_id: Option<&str>,
    ) -> GatewayResult<GenerationReport> {
        let (billing_date, period) = plan(run_date);
        let Some(period) = period else {
            return Ok(GenerationReport {
                run_date,
                billing_date,
                period: None,
                created: 0,
            });
        };
        let billing_day = i64::from(billing_date.day());
        let candidates = self
            .store
            .invoice_candidates(billing_day, &period, merchant_id)
            .await?;
        let due_date = iso_date(billing_date);
        let invoices: Vec<NewInvoice> = candidates
            .into_iter()
            .map(|c| NewInvoice {
                customer_id: c.customer_id,
                merchant_id: c.merchant_id,
                period: period.clone(),
                package_id: c.package_id,
                package_name: c.package_name,
                amount: c.price,
                discount: c.discount,
                due_date: due_date.clone(),
                receipt_token: new_receipt_token(),
            })
            .collect();
        let created = self.store.insert_invoices(invoices).await?;
        metrics::counter!("gema_billing_invoices_created_total").increment(created);
        tracing::info!(created, period, "invoices generated");
        Ok(GenerationReport {
            run_date,
            billing_date,
            period: Some(period),
            created,
        })
    }

    pub async fn invoices(
        &self,
        filter: InvoiceFilter,
        page: &PageRequest,
    ) -> GatewayResult<Page<Invoice>> {
        Ok(self.store.list_invoices(&filter, page).await?)
    }

    pub async fn invoice(&self, id: &str) -> GatewayResult<Invoice> {
        Ok(self.store.get_invoice(id).await?)
    }

    pub async fn invoice_events(&self, id: &str) -> GatewayResult<Vec<InvoiceEvent>> {
        self.store.get_invoice(id).await?;
        Ok(self.store.invoice_events(id).await?)
    }

    /// Marks an invoice paid by hand at the version the caller saw (`stale_version` 409
    /// otherwise: another user changed it). QRIS payments mark themselves.
    #[tracing::instrument(skip_all, fields(invoice_id = id))]
    pub async fn pay(
        &self,
        id: &str,
        version: i64,
        method: PaymentMethod,
        note: Option<&str>,
        actor: &str,
    ) -> GatewayResult<Paid> {
        if method == PaymentMethod::Qris {
            return Err(GatewayError::invalid(
                "method",
                "QRIS payments mark their invoice themselves: issue the invoice's QRIS",
            ));
        }
        let paid = self
            .store
            .pay_invoice(
                id,
                ManualPayment {
                    version,
                    method,
                    note: validate::optional_text("note", note, 500)?,
                    actor: actor.to_owned(),
                    today: iso_date(self.today()),
                },
            )
            .await?;
        metrics::counter!("gema_billing_invoices_paid_total", "method" => method.as_str())
            .increment(1);
        tracing::info!(method = method.as_str(), "invoice marked paid");
        self.send_receipt(&paid.invoice).await;
        Ok(paid)
    }

    #[tracing::instrument(skip_all, fields(invoice_id = id))]
    pub async fn unpay(
        &self,
        id: &str,
        version: i64,
        note: Option<&str>,
        actor: &str,
    ) -> GatewayResult<Invoice> {
        let note = validate::optional_text("note", note, 500)?;
        let invoice = self
            .store
            .unpay_invoice(id, version, note.as_deref(), actor)
            .await?;
        tracing::info!("invoice marked unpaid");
        Ok(invoice)
    }

    /// A dynamic QRIS for the invoice's total on one of its merchant's terminals (the
    /// merchant's soundbox speaks the payment like any other); its payment marks the
    /// invoice paid. Partial payments are refused: the QRIS carries the exact total.
    #[tracing::instrument(skip_all, fields(invoice_id = id, terminal_id))]
    pub async fn issue_qris(
        &self,
        id: &str,
        terminal_id: &str,
        actor: &str,
    ) -> GatewayResult<(Transaction, String)> {
        let invoice = self.store.get_invoice(id).await?;
        if invoice.status == InvoiceStatus::Paid {
            return Err(GatewayError::Conflict {
                code: "already_paid",
                message: format!("invoice {id} is paid already"),
                field: None,
            });
        }
        if invoice.total_amount < 1 {
            return Err(GatewayError::Conflict {
                code: "nothing_to_pay",
                message: format!("invoice {id} totals Rp 0; mark it paid instead"),
                field: None,
            });
        }
        let (new, payload) = self
            .payments
            .prepare_dynamic_qr_with(
                terminal_id,
                invoice.total_amount,
                Some(self.settings.qris_ttl_secs),
                INVOICE_ORDER_PREFIX,
            )
            .await?;
        let transaction = self.store.create_invoice_qris(id, new, actor).await?;
        tracing::info!(transaction_id = %transaction.id, "invoice QRIS issued");
        Ok((transaction, payload))
    }

    /// The public pay page of the invoice whose token is `token` (the link in its bill
    /// reminder): the receipt once it is paid; while it is unpaid, its QRIS on the
    /// merchant's QRIS terminal
    /// ([`gema_store::billing::BillingStore::invoice_qris_terminal`]), the one still pending
    /// when there is one (every visit and every node shows the same code until it expires,
    /// so a customer who pays an older screenshot still pays the invoice once).
    #[tracing::instrument(skip_all)]
    pub async fn pay_page(&self, token: &str) -> GatewayResult<Option<PayPage>> {
        if !receipts::plausible_token(token) {
            return Ok(None);
        }
        let Some(invoice) = self.store.invoice_by_token(token).await? else {
            return Ok(None);
        };
        if invoice.status == InvoiceStatus::Paid {
            return Ok(Some(PayPage::Paid));
        }
        let settings = self.store.billing_settings(&invoice.merchant_id).await?;
        let business_name = match settings.business_name.filter(|n| !n.trim().is_empty()) {
            Some(name) => name,
            None => self.store.get_merchant(&invoice.merchant_id).await?.name,
        };
        let customer = self.store.get_customer(&invoice.customer_id).await?;
        let qris = match self
            .store
            .invoice_qris_terminal(&invoice.merchant_id)
            .await?
        {
            Some(terminal_id) if invoice.total_amount > 0 => {
                match self.pay_page_qris(&invoice, &terminal_id).await {
                    Ok(qris) => Some(qris),
                    // The merchant cannot take this payment now (not approved, its static
                    // QRIS refused): the page shows the bank details without a code.
                    Err(
                        err @ (GatewayError::Conflict { .. }
                        | GatewayError::Invalid { .. }
                        | GatewayError::NotFound { .. }),
                    ) => {
                        tracing::warn!(error = %err, "no QRIS for the pay page");
                        None
                    }
                    Err(err) => return Err(err),
                }
            }
            _ => None,
        };
        let due_date = parse_date("due_date", &invoice.due_date)
            .map(date_label)
            .unwrap_or(invoice.due_date);
        Ok(Some(PayPage::Unpaid(Box::new(UnpaidInvoice {
            business_name,
            customer_name: customer.name,
            package: invoice.package_name,
            period: period_label(&invoice.period),
            total: rupiah(invoice.total_amount),
            due_date,
            bank_details: settings.bank_details.filter(|b| !b.trim().is_empty()),
            qris,
        }))))
    }

    /// The invoice's QRIS on `terminal_id`: the one still pending, or a new one.
    async fn pay_page_qris(&self, invoice: &Invoice, terminal_id: &str) -> GatewayResult<PayQris> {
        let (new, _) = self
            .payments
            .prepare_dynamic_qr_with(
                terminal_id,
                invoice.total_amount,
                Some(self.settings.qris_ttl_secs),
                INVOICE_ORDER_PREFIX,
            )
            .await?;
        let (transaction, created) = self
            .store
            .current_or_create_invoice_qris(&invoice.id, self.clock.now_ms(), new, PAY_PAGE_ACTOR)
            .await?;
        if created {
            tracing::info!(transaction_id = %transaction.id, "invoice QRIS issued for its pay page");
        }
        let payload = self.payments.dynamic_payload_of(&transaction).await?;
        let expires_at = OffsetDateTime::from_unix_timestamp(transaction.expires_at_ms / 1000)
            .map(jakarta_time)
            .unwrap_or_default();
        Ok(PayQris {
            payload,
            expires_at,
        })
    }

    /// Applies a paid invoice QRIS to its invoice (idempotent).
    #[tracing::instrument(skip_all, fields(transaction_id))]
    pub async fn settle_qris(&self, transaction_id: &str) -> GatewayResult<QrisSettled> {
        let today = iso_date(self.today());
        let settled = self
            .store
            .settle_invoice_qris(transaction_id, &today)
            .await?;
        match &settled {
            QrisSettled::Paid(paid) => {
                metrics::counter!("gema_billing_invoices_paid_total", "method" => "qris")
                    .increment(1);
                tracing::info!(invoice_id = %paid.invoice.id, "invoice paid by QRIS");
                self.send_receipt(&paid.invoice).await;
            }
            QrisSettled::AlreadyPaid(invoice) => tracing::warn!(
                invoice_id = %invoice.id,
                "a QRIS payment arrived for an invoice already paid; an operator settles it"
            ),
            QrisSettled::Unchanged | QrisSettled::NotPaid => {}
        }
        Ok(settled)
    }

    /// Invoice QRIS paid but not applied (a lost wake-up), applied now.
    pub async fn settle_missed(&self) -> GatewayResult<usize> {
        let missed = self.store.unsettled_invoice_qris(256).await?;
        for id in &missed {
            tracing::warn!(transaction_id = %id, "applying an invoice payment whose wake-up was lost");
            self.settle_qris(id).await?;
        }
        Ok(missed.len())
    }

    /// Listens for paid invoice transactions from the payment path until `stop`.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let taken = self.paid.lock().ok().and_then(|mut paid| paid.take());
        let Some(mut paid) = taken else {
            tracing::error!("billing's payment listener runs once per process");
            return;
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                Some(id) = paid.recv() => {
                    if let Err(err) = self.settle_qris(&id).await {
                        // The sweep retries it.
                        tracing::error!(error = %err, transaction_id = %id, "applying an invoice payment failed");
                    }
                }
                _ = &mut stop => break,
            }
        }
    }

    // Isolation and the daily run.

    /// Queues the isolation notice of a customer who has just been isolated, keyed by the
    /// history row of that isolation (each isolation is announced once). A failure is
    /// logged: the isolation stands.
    async fn announce_isolation(&self, customer: &Customer) {
        if customer.status != CustomerStatus::Isolated {
            return;
        }
        let result = async {
            let events = self.store.customer_events(&customer.id).await?;
            match events.iter().rev().find(|e| e.kind == "isolated") {
                Some(event) => self.whatsapp.notify_isolation(customer, &event.id).await,
                None => Ok(0),
            }
        }
        .await;
        if let Err(err) = result {
            tracing::error!(error = %err, customer_id = %customer.id, "isolation notice not queued");
        }
    }

    /// Queues a paid invoice's receipt; a failure is logged: the payment stands.
    async fn send_receipt(&self, invoice: &Invoice) {
        if let Err(err) = self.whatsapp.notify_receipt(invoice).await {
            tracing::error!(error = %err, invoice_id = %invoice.id, "receipt not queued");
        }
    }

    /// Isolates every active customer with an invoice unpaid longer than its merchant's
    /// `auto_isolate_days` after the due date, as of Jakarta date `today`.
    pub async fn auto_isolate(&self, today: Date) -> GatewayResult<u64> {
        let mut isolated = 0;
        for setting in self.store.auto_isolations().await? {
            let Some(due_by) = today.checked_sub(time::Duration::days(setting.auto_isolate_days))
            else {
                continue;
            };
            let reason = format!(
                "an invoice unpaid {} days after its due date",
                setting.auto_isolate_days
            );
            for customer in self
                .store
                .overdue_customers(&setting.merchant_id, &iso_date(due_by))
                .await?
            {
                let customer = self
                    .store
                    .set_customer_status(
                        &customer,
                        CustomerStatus::Isolated,
                        Some(&reason),
                        "schedule",
                    )
                    .await?;
                self.announce_isolation(&customer).await;
                isolated += 1;
            }
        }
        if isolated > 0 {
            tracing::info!(isolated, "overdue customers isolated");
        }
        Ok(isolated)
    }

    /// The daily run for `run_date`: generation and automatic isolation, recorded (once per
    /// date) as `run_by`.
    pub async fn daily_run(&self, run_date: Date, run_by: &str) -> GatewayResult<DailyRun> {
        let generation = self.generate(run_date, None).await?;
        let isolated = self.auto_isolate(run_date).await?;
        self.store
            .record_billing_run(
                &iso_date(run_date),
                i64::try_from(generation.created).unwrap_or(i64::MAX),
                i64::try_from(isolated).unwrap_or(i64::MAX),
                run_by,
            )
            .await?;
        Ok(DailyRun {
            generation,
            isolated,
        })
    }

    /// The scheduled work (one node at a time): every daily run due and not yet recorded
    /// (missed days caught up), then the webhooks due, then missed QRIS payments.
    pub async fn sweep(&self) -> GatewayResult<()> {
        let now = self.clock.now_utc().to_offset(JAKARTA);
        let (hour, minute) = self.settings.generate_time;
        let at = time::Time::from_hms(hour, minute, 0)
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        let latest = if now.time() >= at {
            Some(now.date())
        } else {
            now.date().previous_day()
        };
        if let Some(latest) = latest {
            let last = self.store.last_billing_run().await?;
            let earliest = latest
                .checked_sub(time::Duration::days(CATCH_UP_DAYS - 1))
                .unwrap_or(latest);
            let mut date = match last.as_deref().map(|d| parse_date("run_date", d)) {
                Some(Ok(last)) => last.next_day().unwrap_or(latest).max(earliest),
                // A fresh installation starts with today's run.
                _ => latest,
            };
            while date <= latest {
                let run = self
                    .daily_run(date, &format!("schedule:{}", self.node_id))
                    .await?;
                tracing::info!(
                    run_date = %iso_date(date),
                    created = run.generation.created,
                    isolated = run.isolated,
                    "daily billing run"
                );
                date = match date.next_day() {
                    Some(next) => next,
                    None => break,
                };
            }
        }
        self.deliver_webhooks().await?;
        self.settle_missed().await?;
        Ok(())
    }

    /// Sends the isolation webhooks that are due, each signed like Gema's generic callback
    /// (`X-Gema-Timestamp`, `X-Gema-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`
    /// with the merchant's secret) and carrying `X-Gema-Delivery` (the webhook id, for the
    /// receiver to drop a repeat: delivery is at least once).
    pub async fn deliver_webhooks(&self) -> GatewayResult<usize> {
        let now_ms = self.clock.now_ms();
        let claim_ms =
            i64::try_from(self.settings.webhook_timeout.as_millis() * 3).unwrap_or(30_000);
        let claimed = self
            .store
            .claim_billing_webhooks(&self.node_id, now_ms, now_ms + claim_ms, WEBHOOK_BATCH)
            .await?;
        let count = claimed.len();
        for claimed in claimed {
            let webhook = claimed.webhook;
            let timestamp = (self.clock.now_ms() / 1000).to_string();
            let mut request = self
                .http
                .post(&webhook.url)
                .header("content-type", "application/json")
                .header("x-gema-event", &webhook.event)
                .header("x-gema-delivery", &webhook.id)
                .header(providers::GENERIC_TIMESTAMP_HEADER, &timestamp);
            match &claimed.secret {
                Some(secret) => {
                    request = request.header(
                        providers::GENERIC_SIGNATURE_HEADER,
                        providers::generic_signature(secret, &timestamp, webhook.body.as_bytes()),
                    );
                }
                None => tracing::warn!(
                    merchant_id = %webhook.merchant_id,
                    "isolation webhook sent unsigned: the merchant has no webhook secret"
                ),
            }
            let error = match request.body(webhook.body.clone()).send().await {
                Ok(response) if response.status().is_success() => None,
                Ok(response) => Some(format!("HTTP {}", response.status().as_u16())),
                Err(err) => Some(format!("request failed: {}", err.without_url())),
            };
            let next = error.as_ref().and_then(|_| {
                let attempts = u32::try_from(webhook.attempts).unwrap_or(u32::MAX);
                (attempts < self.settings.webhook_attempts).then(|| {
                    let delay = self
                        .settings
                        .webhook_retry_base
                        .saturating_mul(1 << attempts.saturating_sub(1).min(10))
                        .min(Duration::from_secs(3600));
                    self.clock.now_ms() + i64::try_from(delay.as_millis()).unwrap_or(3_600_000)
                })
            });
            let outcome = match (&error, next) {
                (None, _) => "delivered",
                (Some(_), Some(_)) => "retry",
                (Some(_), None) => "failed",
            };
            metrics::counter!("gema_billing_webhooks_total", "outcome" => outcome).increment(1);
            if let Some(error) = &error {
                tracing::warn!(webhook_id = %webhook.id, error, outcome, "isolation webhook not delivered");
            }
            self.store
                .finish_billing_webhook(&webhook.id, error.as_deref(), next)
                .await?;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    /// `str::parse` takes a sign: `+026-01-15` was the year 26 and `2026-+1` January.
    #[test]
    fn a_signed_part_is_not_a_date_or_a_month() {
        for bad in ["+026-01-15", "2026-+1-15", "2026-01-+5", "-026-01-15"] {
            assert!(parse_date("d", bad).is_err(), "{bad}");
        }
        for bad in ["2026-+1", "+026-01", "2026--1"] {
            assert!(parse_period("p", bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_date("d", "2026-01-15").unwrap(),
            date!(2026 - 01 - 15)
        );
        assert_eq!(parse_period("p", "2026-01").unwrap(), "2026-01");
    }

    #[test]
    fn runs_bill_tomorrow_for_the_month_after() {
        assert_eq!(
            plan(date!(2026 - 02 - 04)),
            (date!(2026 - 02 - 05), Some("2026-03".into()))
        );
        // Month and year ends.
        assert_eq!(
            plan(date!(2026 - 01 - 31)),
            (date!(2026 - 02 - 01), Some("2026-03".into()))
        );
        assert_eq!(
            plan(date!(2026 - 12 - 31)),
            (date!(2027 - 01 - 01), Some("2027-02".into()))
        );
        assert_eq!(
            plan(date!(2026 - 11 - 30)),
            (date!(2026 - 12 - 01), Some("2027-01".into()))
        );
        // Day 28 is the last billing day; 29, 30 and 31 bill nobody.
        assert_eq!(
            plan(date!(2026 - 02 - 27)),
            (date!(2026 - 02 - 28), Some("2026-03".into()))
        );
        assert_eq!(plan(date!(2028 - 02 - 28)).1, None, "29 February");
        assert_eq!(plan(date!(2026 - 03 - 29)).1, None);
        assert_eq!(plan(date!(2026 - 03 - 30)).1, None);
    }

    #[test]
    fn dates_and_periods_parse_strictly() {
        assert_eq!(
            parse_date("d", "2026-02-28").unwrap(),
            date!(2026 - 02 - 28)
        );
        for bad in ["2026-02-29", "2026-2-01", "26-02-01", "2026-13-01", "x", ""] {
            assert!(parse_date("d", bad).is_err(), "{bad}");
        }
        assert_eq!(parse_period("p", "2026-03").unwrap(), "2026-03");
        for bad in ["2026-3", "2026-13", "2026", "1900-01"] {
            assert!(parse_period("p", bad).is_err(), "{bad}");
        }
        assert_eq!(nik("nik", Some(" ")).unwrap(), None);
        assert!(nik("nik", Some("12345")).is_err());
    }

    /// What a query or a form can hold: date-like text, or any text.
    fn date_like() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof!["[0-9+ -]{0,12}", "\\PC{0,16}"]
    }

    proptest::proptest! {
        /// `due_date=`, `period=`, a customer's register date: an error or a real date or
        /// month, never a panic; what is accepted is written back as `YYYY-MM-DD` or
        /// `YYYY-MM` and reads the same.
        #[test]
        fn date_and_period_inputs_never_panic(text in date_like()) {
            if let Ok(date) = parse_date("d", &text) {
                proptest::prop_assert_eq!(parse_date("d", &iso_date(date)).ok(), Some(date));
            }
            if let Ok(period) = parse_period("p", &text) {
                proptest::prop_assert_eq!(period.len(), 7);
                proptest::prop_assert_eq!(parse_period("p", &period).ok(), Some(period.clone()));
            }
        }
    }

    #[test]
    fn merchants_change_only_phone_and_discount() {
        let ok = CustomerChanges {
            phone: Some("0812".into()),
            discount: Some(5),
            ..Default::default()
        };
        assert_eq!(ok.beyond_merchant_edits(), None);
        let name = CustomerChanges {
            name: Some("x".into()),
            ..ok
        };
        assert_eq!(name.beyond_merchant_edits(), Some("name"));
    }
}
