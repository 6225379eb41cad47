//! The customer CSV import (the billing seed's format), dry run and confirm.
//!
//! The file is the seed's, header first:
//! `nama,telepon,diskon,tanggal,area,paket_nama,paket_tarif,total_bayar,nik,tanggal_register`
//! (header names compared case-insensitively after trimming, in any order, other columns
//! ignored; every one of the ten must be there). It is read by [`crate::csv_in`]: a UTF-8
//! BOM, CRLF, quoted fields with commas, quotes and line breaks, and `;` (or tab) as the
//! separator, taken from the header line.
//!
//! Every row is checked against the rules below; a dry run ([`ImportMode::DryRun`]) only
//! reports each row, valid or invalid with its problems. A confirm ([`ImportMode::Import`])
//! checks the same way, then writes the valid rows in **one** database transaction
//! (`CustomerImportStore::import_customers`), which re-checks what may have changed since:
//! a phone taken meanwhile or a package changed skips that row (`skipped`). With
//! `all_or_nothing`, one invalid or skipped row writes nothing. Each imported customer is
//! `active`, has an `imported` history event (actor `import:<import id>`), and its area
//! names its merchant.
//!
//! The rules (each problem names its column and a stable code):
//! - `nama` is required (`missing_name`, or `bad_name`: over 255 characters, control
//!   characters);
//! - `telepon` is a WhatsApp number, `08…`/`+62…`/`62…` normalised to `62…`, 10–15 digits
//!   (`bad_phone`); no other customer of the merchant has it (`phone_taken`), and no earlier
//!   row of the file for the same merchant (`duplicate_phone_in_file`: the first row keeps
//!   it);
//! - `area` is one merchant's billing area: its billing business name, or its name when it
//!   has none, compared case-insensitively after trimming (`unknown_area`; two merchants
//!   with that name: `ambiguous_area`);
//! - `paket_nama` names a package (exactly, else case-insensitively; `unknown_package`)
//!   that is offered: an inactive package is hidden from new customers, as the seed's
//!   form hides it, so it is refused here too (`inactive_package`);
//! - `paket_tarif` is the package's price (`price_mismatch`);
//! - `diskon` is 0 to the price (`bad_discount`); `total_bayar` is `paket_tarif` − discount
//!   (`total_mismatch`; a wrong price is reported once, as `price_mismatch`); a money column that is not a whole number of rupiah is
//!   `bad_number`;
//! - `tanggal` (the billing day) is 1–28 (`bad_billing_day`);
//! - `nik`, if given, is 16 digits (`bad_nik`);
//! - `tanggal_register` is `YYYY-MM-DD`, a real date (`bad_register_date`); empty means
//!   today (Asia/Jakarta), as the seed's column defaults;
//! - a line that cannot be read as CSV is `unreadable`.
//!
//! A file over `billing.import_max_bytes` is refused whole (field `file`), as is one whose
//! header lacks a column (the field is the column).

use std::collections::HashMap;

use gema_store::billing::customer_total;
use gema_store::{
    CustomerImport, ImportCatalogue, ImportPackage, ImportSkipReason, NewImportedCustomer,
};
use serde::Serialize;
use time::Date;
use time::macros::format_description;

use super::Billing;
use crate::csv_in;
use crate::error::{GatewayError, GatewayResult};

/// The columns of the customer-data export (`billing_customers`): the import's ten
/// ([`COLUMNS`]) first, so an export can be imported again, then what the import does not
/// carry.
pub const EXPORT_COLUMNS: &[&str] = &[
    "nama",
    "telepon",
    "diskon",
    "tanggal",
    "area",
    "paket_nama",
    "paket_tarif",
    "total_bayar",
    "nik",
    "tanggal_register",
    "id",
    "merchant_id",
    "package_id",
    "status",
    "address",
    "notes",
    "created_at",
];

/// The seed's columns, in its order.
pub const COLUMNS: &[&str] = EXPORT_COLUMNS.split_at(10).0;

/// Longest customer name.
const NAME_MAX: usize = 255;

/// A dry run reports; an import writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportMode {
    DryRun,
    Import,
}

impl ImportMode {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "dry_run" => Some(ImportMode::DryRun),
            "import" => Some(ImportMode::Import),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ImportMode::DryRun => "dry_run",
            ImportMode::Import => "import",
        }
    }
}

/// What became of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    /// Passes every rule (a dry run, or an all-or-nothing import that wrote nothing).
    Valid,
    Invalid,
    Imported,
    /// Valid when checked, refused inside the import's transaction.
    Skipped,
}

/// One rule a row breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowProblem {
    pub code: &'static str,
    /// The column at fault (`line` for an unreadable line).
    pub field: &'static str,
    pub message: String,
}

/// A row's values, as they would be (or were) written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportCustomer {
    pub merchant_id: String,
    pub package_id: String,
    pub name: String,
    pub phone: String,
    pub nik: Option<String>,
    pub billing_day: i64,
    pub discount: i64,
    /// The package's price.
    pub price: i64,
    /// What the customer pays a month: price − discount.
    pub total: i64,
    pub register_date: String,
    /// Set once imported.
    pub customer_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportRow {
    /// The file's line the row starts on (the header is line 1).
    pub line: i64,
    pub status: RowStatus,
    pub problems: Vec<RowProblem>,
    /// The checked values of a valid row; `None` for an invalid one.
    pub customer: Option<ImportCustomer>,
}

/// What an import (or its dry run) found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub mode: ImportMode,
    pub all_or_nothing: bool,
    /// The import's id (`imp_…`) when it wrote, or tried to write.
    pub import_id: Option<String>,
    /// Data rows read (the header not counted).
    pub rows: usize,
    pub valid: usize,
    pub invalid: usize,
    pub imported: usize,
    pub skipped: usize,
    /// A dry run: every row. An import: the rows not imported (invalid, skipped, and with
    /// all-or-nothing refused, the valid ones left unwritten).
    pub results: Vec<ImportRow>,
}

impl Billing {
    /// Checks a customer CSV and, in [`ImportMode::Import`], writes its valid rows (see the
    /// module docs). `created_by` is the caller (`api:<user>`).
    #[tracing::instrument(skip_all, fields(mode = mode.as_str(), all_or_nothing = all_or_nothing, bytes = csv.len()))]
    pub async fn import_customers(
        &self,
        csv: &[u8],
        mode: ImportMode,
        all_or_nothing: bool,
        created_by: &str,
    ) -> GatewayResult<ImportReport> {
        if csv.len() > self.settings.import_max_bytes {
            return Err(GatewayError::invalid(
                "file",
                format!(
                    "the file is {} bytes; the import takes at most {} (billing.import_max_bytes)",
                    csv.len(),
                    self.settings.import_max_bytes
                ),
            ));
        }
        let records = read_rows(csv)?;
        let catalogue = self.store.customer_import_catalogue().await?;
        let today = self
            .clock
            .now_utc()
            .to_offset(crate::settlement::JAKARTA)
            .date();
        let mut rows = check_rows(&records, &catalogue, today);
        let pairs: Vec<(String, String)> = rows.iter().filter_map(|r| r.claim.clone()).collect();
        let taken = self.store.taken_customer_phones(&pairs).await?;
        mark_taken(&mut rows, &taken);

        let mut report = ImportReport {
            mode,
            all_or_nothing,
            import_id: None,
            rows: rows.len(),
            valid: rows.iter().filter(|r| r.row.problems.is_empty()).count(),
            invalid: 0,
            imported: 0,
            skipped: 0,
            results: Vec::new(),
        };
        report.invalid = report.rows - report.valid;
        let mut rows: Vec<ImportRow> = rows.into_iter().map(|r| r.row).collect();
        if mode == ImportMode::DryRun || report.valid == 0 || (all_or_nothing && report.invalid > 0)
        {
            if mode == ImportMode::Import {
                rows.retain(|r| r.status == RowStatus::Invalid || all_or_nothing);
            }
            report.results = rows;
            return Ok(report);
        }

        let customers: Vec<NewImportedCustomer> = rows
            .iter()
            .filter_map(|row| {
                let c = row.customer.as_ref()?;
                Some(NewImportedCustomer {
                    line: row.line,
                    merchant_id: c.merchant_id.clone(),
                    package_id: c.package_id.clone(),
                    price: c.price,
                    name: c.name.clone(),
                    phone: c.phone.clone(),
                    nik: c.nik.clone(),
                    billing_day: c.billing_day,
                    discount: c.discount,
                    register_date: c.register_date.clone(),
                })
            })
            .collect();
        let outcome = self
            .store
            .import_customers(CustomerImport {
                created_by: created_by.to_owned(),
                all_or_nothing,
                customers,
            })
            .await?;
        let imported: HashMap<i64, String> = outcome.imported.into_iter().collect();
        let skipped: HashMap<i64, ImportSkipReason> = outcome
            .skipped
            .into_iter()
            .map(|s| (s.line, s.reason))
            .collect();
        for row in &mut rows {
            if let Some(id) = imported.get(&row.line) {
                row.status = RowStatus::Imported;
                if let Some(c) = row.customer.as_mut() {
                    c.customer_id = Some(id.clone());
                }
            } else if let Some(reason) = skipped.get(&row.line) {
                row.status = RowStatus::Skipped;
                row.problems.push(skip_problem(*reason));
            }
        }
        report.import_id = Some(outcome.import_id);
        report.imported = imported.len();
        report.skipped = skipped.len();
        rows.retain(|r| r.status != RowStatus::Imported);
        report.results = rows;
        Ok(report)
    }
}

fn skip_problem(reason: ImportSkipReason) -> RowProblem {
    match reason {
        ImportSkipReason::PhoneTaken => RowProblem {
            code: "phone_taken",
            field: "telepon",
            message: "the merchant got a customer with this phone while the import ran".into(),
        },
        ImportSkipReason::PackageChanged => RowProblem {
            code: "package_changed",
            field: "paket_nama",
            message: "the package changed its price or stopped being offered while the import ran"
                .into(),
        },
    }
}

/// A data record: its line and its fields in [`COLUMNS`] order (a column the record is
/// too short for is empty), or why the line could not be read.
type Record = (i64, Result<[String; 10], String>);

/// The header mapped to [`COLUMNS`], then every data record. `Invalid` for an empty file,
/// an unreadable header, or a header without one of the columns (the field is the column).
fn read_rows(csv: &[u8]) -> GatewayResult<Vec<Record>> {
    let mut records = csv_in::read(csv).into_iter();
    let header = match records.next() {
        None => {
            return Err(GatewayError::invalid(
                "file",
                format!(
                    "the file is empty: it needs the header line {}",
                    COLUMNS.join(",")
                ),
            ));
        }
        Some(csv_in::Record {
            fields: Err(reason),
            line,
        }) => {
            return Err(GatewayError::invalid(
                "file",
                format!("the header (line {line}) cannot be read: {reason}"),
            ));
        }
        Some(csv_in::Record {
            fields: Ok(header), ..
        }) => header,
    };
    let names: Vec<String> = header
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_lowercase())
        .collect();
    let mut at = [0usize; 10];
    debug_assert_eq!(COLUMNS.len(), at.len());
    let mut missing = Vec::new();
    for (i, column) in COLUMNS.iter().enumerate() {
        match names.iter().position(|n| n == column) {
            Some(p) => at[i] = p,
            None => missing.push(*column),
        }
    }
    if let Some(first) = missing.first() {
        return Err(GatewayError::invalid(
            first,
            format!(
                "the header lacks the column(s) {}; it must have {}",
                missing.join(", "),
                COLUMNS.join(",")
            ),
        ));
    }
    Ok(records
        .map(|record| {
            let line = i64::try_from(record.line).unwrap_or(i64::MAX);
            let fields = record.fields.map(|fields| {
                at.map(|i| {
                    fields
                        .get(i)
                        .map(|v| v.trim().to_owned())
                        .unwrap_or_default()
                })
            });
            (line, fields)
        })
        .collect())
}

/// A checked row, and the `(merchant, phone)` it claims in the file (the first row with a
/// merchant and a phone claims them, valid or not).
struct Checked {
    row: ImportRow,
    claim: Option<(String, String)>,
}

/// Packages and areas, keyed for lookups.
struct Lookup<'a> {
    exact: HashMap<&'a str, &'a ImportPackage>,
    folded: HashMap<String, Vec<&'a ImportPackage>>,
    areas: HashMap<String, Vec<&'a str>>,
}

impl<'a> Lookup<'a> {
    fn new(catalogue: &'a ImportCatalogue) -> Self {
        let mut folded: HashMap<String, Vec<&ImportPackage>> = HashMap::new();
        for p in &catalogue.packages {
            folded.entry(fold(&p.name)).or_default().push(p);
        }
        let mut areas: HashMap<String, Vec<&str>> = HashMap::new();
        for a in &catalogue.areas {
            areas.entry(fold(&a.area)).or_default().push(&a.merchant_id);
        }
        Lookup {
            exact: catalogue
                .packages
                .iter()
                .map(|p| (p.name.trim(), p))
                .collect(),
            folded,
            areas,
        }
    }

    fn package(&self, name: &str) -> Result<&'a ImportPackage, RowProblem> {
        if let Some(p) = self.exact.get(name) {
            return Ok(*p);
        }
        match self.folded.get(&fold(name)).map(Vec::as_slice) {
            Some([p]) => Ok(*p),
            Some(_) => Err(problem(
                "unknown_package",
                "paket_nama",
                format!("{name:?} matches several packages when case is ignored; write it exactly"),
            )),
            None => Err(problem(
                "unknown_package",
                "paket_nama",
                format!("no package is named {name:?}"),
            )),
        }
    }

    fn merchant(&self, area: &str) -> Result<&'a str, RowProblem> {
        match self.areas.get(&fold(area)).map(Vec::as_slice) {
            Some([merchant]) => Ok(*merchant),
            Some(several) => Err(problem(
                "ambiguous_area",
                "area",
                format!(
                    "{} merchants have the area name {area:?}; give one a distinct billing business name",
                    several.len()
                ),
            )),
            None => Err(problem(
                "unknown_area",
                "area",
                format!("no merchant has the area (billing business name) {area:?}"),
            )),
        }
    }
}

fn fold(text: &str) -> String {
    text.trim().to_lowercase()
}

fn problem(code: &'static str, field: &'static str, message: impl Into<String>) -> RowProblem {
    RowProblem {
        code,
        field,
        message: message.into(),
    }
}

/// Every rule but the database's phones ([`mark_taken`]).
fn check_rows(records: &[Record], catalogue: &ImportCatalogue, today: Date) -> Vec<Checked> {
    let lookup = Lookup::new(catalogue);
    let mut claimed: HashMap<(String, String), i64> = HashMap::new();
    records
        .iter()
        .map(|(line, fields)| {
            let fields = match fields {
                Ok(fields) => fields,
                Err(reason) => {
                    return Checked {
                        row: ImportRow {
                            line: *line,
                            status: RowStatus::Invalid,
                            problems: vec![problem("unreadable", "line", reason.clone())],
                            customer: None,
                        },
                        claim: None,
                    };
                }
            };
            let mut checked = check_row(*line, fields, &lookup, today);
            if let Some(claim) = checked.claim.take() {
                match claimed.get(&claim) {
                    Some(first) => checked.row.problems.push(problem(
                        "duplicate_phone_in_file",
                        "telepon",
                        format!(
                            "line {first} has this phone for the same merchant; the first one is kept"
                        ),
                    )),
                    None => {
                        claimed.insert(claim.clone(), *line);
                        checked.claim = Some(claim);
                    }
                }
            }
            if !checked.row.problems.is_empty() {
                checked.row.status = RowStatus::Invalid;
                checked.row.customer = None;
            }
            checked
        })
        .collect()
}

fn check_row(line: i64, f: &[String; 10], lookup: &Lookup<'_>, today: Date) -> Checked {
    let [
        nama,
        telepon,
        diskon,
        tanggal,
        area,
        paket_nama,
        paket_tarif,
        total_bayar,
        nik,
        tanggal_register,
    ] = f;
    let mut problems = Vec::new();
    let mut note = |p: RowProblem| problems.push(p);

    let name = if nama.is_empty() {
        note(problem(
            "missing_name",
            "nama",
            "the customer's name is required",
        ));
        None
    } else {
        match crate::validate::text("nama", nama, NAME_MAX) {
            Ok(name) => Some(name),
            Err(err) => {
                note(problem("bad_name", "nama", message_of(err)));
                None
            }
        }
    };
    let phone = match crate::validate::wa_phone("telepon", telepon) {
        Ok(phone) => Some(phone),
        Err(err) => {
            note(problem("bad_phone", "telepon", message_of(err)));
            None
        }
    };
    let merchant = lookup.merchant(area).map_err(&mut note).ok();
    let package = match lookup.package(paket_nama) {
        Ok(p) if !p.active => {
            note(problem(
                "inactive_package",
                "paket_nama",
                format!(
                    "the package {:?} is no longer offered to new customers",
                    p.name
                ),
            ));
            None
        }
        Ok(p) => Some(p),
        Err(p) => {
            note(p);
            None
        }
    };
    let mut number = |field: &'static str, text: &str| match text.parse::<i64>() {
        Ok(n) => Some(n),
        Err(_) => {
            note(problem(
                "bad_number",
                field,
                format!("{text:?} is not a whole number of rupiah"),
            ));
            None
        }
    };
    let discount = if diskon.is_empty() {
        Some(0)
    } else {
        number("diskon", diskon)
    };
    let listed_price = number("paket_tarif", paket_tarif);
    let total = number("total_bayar", total_bayar);
    let price = package.map(|p| p.price).or(listed_price);
    if let (Some(package), Some(listed)) = (package, listed_price)
        && listed != package.price
    {
        note(problem(
            "price_mismatch",
            "paket_tarif",
            format!(
                "the package {:?} costs {}, not {listed}",
                package.name, package.price
            ),
        ));
    }
    let mut discount_ok = false;
    if let Some(discount) = discount {
        if discount < 0 || price.is_some_and(|price| discount > price) {
            note(problem(
                "bad_discount",
                "diskon",
                match price {
                    Some(price) => {
                        format!("the discount must be 0 to the price ({price}), not {discount}")
                    }
                    None => format!("the discount must not be negative, not {discount}"),
                },
            ));
        } else {
            discount_ok = true;
        }
    }
    // The total is checked against the row's own price, so a wrong price is reported once
    // (`price_mismatch`), not again as a wrong total.
    // `paket_tarif` is the file's number, as low as `i64::MIN`, so the subtraction is
    // checked; it can only fail for a price already reported as `price_mismatch` (the
    // discount is at most the package's price here).
    let row_price = listed_price.or(price);
    let expected_total = match (discount_ok, discount, row_price) {
        (true, Some(discount), Some(price)) if price.checked_sub(discount).is_some() => {
            Some(customer_total(price, discount))
        }
        _ => None,
    };
    if let (Some(expected), Some(total)) = (expected_total, total)
        && total != expected
    {
        note(problem(
            "total_mismatch",
            "total_bayar",
            format!("the total must be price − discount = {expected}, not {total}"),
        ));
    }
    let billing_day = match tanggal.parse::<i64>() {
        Ok(day @ 1..=28) => Some(day),
        _ => {
            note(problem(
                "bad_billing_day",
                "tanggal",
                format!("the billing day must be 1 to 28, not {tanggal:?}"),
            ));
            None
        }
    };
    let nik = if nik.is_empty() {
        None
    } else if nik.len() == 16 && nik.bytes().all(|b| b.is_ascii_digit()) {
        Some(nik.clone())
    } else {
        note(problem(
            "bad_nik",
            "nik",
            "a NIK is 16 digits (or leave it empty)",
        ));
        None
    };
    let register_date = if tanggal_register.is_empty() {
        Some(today)
    } else {
        match Date::parse(
            tanggal_register,
            format_description!("[year]-[month]-[day]"),
        ) {
            Ok(date) => Some(date),
            Err(_) => {
                note(problem(
                    "bad_register_date",
                    "tanggal_register",
                    format!("{tanggal_register:?} is not a date YYYY-MM-DD"),
                ));
                None
            }
        }
    };

    let claim = match (merchant, &phone) {
        (Some(m), Some(p)) => Some((m.to_owned(), p.clone())),
        _ => None,
    };
    let customer = match (
        merchant,
        package,
        name,
        phone,
        billing_day,
        discount,
        register_date,
    ) {
        (Some(m), Some(p), Some(name), Some(phone), Some(day), Some(discount), Some(date))
            if problems.is_empty() =>
        {
            Some(ImportCustomer {
                merchant_id: m.to_owned(),
                package_id: p.id.clone(),
                name,
                phone,
                nik,
                billing_day: day,
                discount,
                price: p.price,
                total: customer_total(p.price, discount),
                register_date: date.to_string(),
                customer_id: None,
            })
        }
        _ => None,
    };
    Checked {
        row: ImportRow {
            line,
            status: if problems.is_empty() {
                RowStatus::Valid
            } else {
                RowStatus::Invalid
            },
            problems,
            customer,
        },
        claim,
    }
}

fn message_of(err: GatewayError) -> String {
    match err {
        GatewayError::Invalid { message, .. } => message,
        other => other.to_string(),
    }
}

/// Marks the rows whose `(merchant, phone)` a customer already has.
fn mark_taken(rows: &mut [Checked], taken: &[(String, String)]) {
    if taken.is_empty() {
        return;
    }
    let taken: std::collections::HashSet<&(String, String)> = taken.iter().collect();
    for checked in rows {
        if let Some(claim) = &checked.claim
            && taken.contains(claim)
        {
            checked.row.problems.push(problem(
                "phone_taken",
                "telepon",
                "the merchant already has a customer with this phone",
            ));
            checked.row.status = RowStatus::Invalid;
            checked.row.customer = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> ImportCatalogue {
        ImportCatalogue {
            packages: vec![ImportPackage {
                id: "pkg_1".into(),
                name: "Paket 10 Mbps".into(),
                price: 100_000,
                active: true,
            }],
            areas: vec![
                gema_store::ImportArea {
                    merchant_id: "mer_1".into(),
                    area: "WiFi Sukamaju".into(),
                },
                gema_store::ImportArea {
                    merchant_id: "mer_2".into(),
                    area: "Kembar".into(),
                },
                gema_store::ImportArea {
                    merchant_id: "mer_3".into(),
                    area: "kembar ".into(),
                },
            ],
        }
    }

    fn codes(csv: &str) -> Vec<Vec<&'static str>> {
        let records = read_rows(csv.as_bytes()).unwrap();
        let today = time::macros::date!(2026 - 12 - 04);
        check_rows(&records, &catalogue(), today)
            .into_iter()
            .map(|c| c.row.problems.iter().map(|p| p.code).collect())
            .collect()
    }

    const HEADER: &str = "nama,telepon,diskon,tanggal,area,paket_nama,paket_tarif,total_bayar,nik,tanggal_register\n";

    #[test]
    fn a_good_row_passes_and_each_rule_names_its_code() {
        let csv = format!(
            "{HEADER}\
             Ahmad,6281234567890,0,5,WiFi Sukamaju,Paket 10 Mbps,100000,100000,3201234567890001,2025-01-15\n\
             ,0812345678901,0,5, wifi sukamaju ,paket 10 mbps,100000,100000,,\n\
             Budi,12345,-1,0,Nowhere,Paket X,abc,5,123,2025-13-01\n\
             Kembar,6281234567891,0,5,KEMBAR,Paket 10 Mbps,100000,100000,,2025-01-15\n"
        );
        assert_eq!(
            codes(&csv),
            vec![
                vec![],
                vec!["missing_name"],
                vec![
                    "bad_phone",
                    "unknown_area",
                    "unknown_package",
                    "bad_number",
                    "bad_discount",
                    "bad_billing_day",
                    "bad_nik",
                    "bad_register_date"
                ],
                vec!["ambiguous_area"],
            ]
        );
    }

    /// A money column's number: the extremes, near the package's price, or anything.
    fn money_column() -> impl proptest::strategy::Strategy<Value = i64> {
        use proptest::prelude::*;
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            -200_000i64..=200_000,
            any::<i64>(),
        ]
    }

    proptest::proptest! {
        /// Any bytes after a good header: every record is checked or reported, never a
        /// panic.
        #[test]
        fn arbitrary_rows_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut csv = HEADER.as_bytes().to_vec();
            csv.extend_from_slice(&bytes);
            let records = read_rows(&csv).unwrap();
            let today = time::macros::date!(2026 - 12 - 04);
            let rows = check_rows(&records, &catalogue(), today);
            proptest::prop_assert_eq!(rows.len(), records.len());
        }

        /// Any whole numbers in the money columns of a row that is otherwise good (random
        /// bytes almost never spell one): checked or reported, never an overflow.
        #[test]
        fn any_numbers_in_the_money_columns_never_panic(
            diskon in money_column(),
            tarif in money_column(),
            total in money_column(),
            known_package in proptest::prelude::any::<bool>(),
        ) {
            let package = if known_package { "Paket 10 Mbps" } else { "Paket X" };
            let csv = format!(
                "{HEADER}Ahmad,6281234567890,{diskon},5,WiFi Sukamaju,{package},{tarif},{total},,2025-01-15\n"
            );
            let records = read_rows(csv.as_bytes()).unwrap();
            let today = time::macros::date!(2026 - 12 - 04);
            let rows = check_rows(&records, &catalogue(), today);
            proptest::prop_assert_eq!(rows.len(), 1);
            if let Some(customer) = &rows[0].row.customer {
                proptest::prop_assert!(customer.total >= 0 && customer.total <= customer.price);
            }
        }
    }

    /// `paket_tarif` = `i64::MIN` with a discount for a known package: the total is checked
    /// against `i64::MIN − 1`, which overflowed (a panic in a debug build, a wrapped
    /// `total_mismatch` message in a release one). The price is reported, once.
    #[test]
    fn a_price_of_i64_min_is_a_price_mismatch_not_an_overflow() {
        let csv = format!(
            "{HEADER}Ahmad,6281234567890,1,5,WiFi Sukamaju,Paket 10 Mbps,-9223372036854775808,0,,2025-01-15\n"
        );
        assert_eq!(codes(&csv), vec![vec!["price_mismatch"]]);
    }

    #[test]
    fn a_missing_column_is_named() {
        let err = read_rows(b"nama,telepon\nA,628123456789\n").unwrap_err();
        match err {
            GatewayError::Invalid { field, message } => {
                assert_eq!(field, "diskon");
                assert!(message.contains("tanggal_register"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
