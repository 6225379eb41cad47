//! The customer CSV import: a fixture file per seed rule (`tests/fixtures/billing/`), dry
//! run and import, all-or-nothing, re-imports, the size limit, the audit row; and the
//! customer-data export's permission per kind.

use axum::body::Body;
use axum::http::{StatusCode, header};
use gema_gateway::testing::eventually;
use gema_store::seed::{SeedPackage, seed_billing_catalogue};
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApi, assert_envelope, field};

/// Two merchants, as the seed's example names them: A's billing business name is
/// "WiFi Sukamaju"; B has none, so its area is its own name, "Net Mekarjaya". The seed's
/// three packages, and one no longer offered.
struct Billing {
    a: String,
    b: String,
    packages: Vec<String>,
}

async fn billing(api: &TestApi) -> Billing {
    let mut merchants = Vec::new();
    for name in ["Warung Sari", "Net Mekarjaya"] {
        let r = api.post("/api/v1/merchants", json!({ "name": name })).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        merchants.push(r.body["id"].as_str().unwrap().to_string());
    }
    let package = |name: &str, price: i64, active: bool| SeedPackage {
        name: name.into(),
        price,
        active,
    };
    let packages = seed_billing_catalogue(
        &database_url(api),
        &[
            package("Paket 10 Mbps", 100_000, true),
            package("Paket 20 Mbps", 150_000, true),
            package("Paket 50 Mbps", 250_000, true),
            package("Paket Lama", 50_000, false),
        ],
        &[(merchants[0].as_str(), "WiFi Sukamaju")],
    )
    .await
    .unwrap();
    Billing {
        a: merchants[0].clone(),
        b: merchants[1].clone(),
        packages,
    }
}

fn database_url(api: &TestApi) -> String {
    format!("sqlite://{}", api.dir().join("gema.db").display())
}

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/billing")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn upload(api: &TestApi, csv: Vec<u8>, query: &str) -> Reply {
    let request = api
        .request("POST", &format!("/api/v1/billing/customer-imports?{query}"))
        .header(header::CONTENT_TYPE, "text/csv")
        .body(Body::from(csv))
        .unwrap();
    api.send(request).await
}

async fn dry_run(api: &TestApi, name: &str) -> Reply {
    let r = upload(api, fixture(name), "mode=dry_run").await;
    assert_eq!(r.status, StatusCode::OK, "{name}: {}", r.body);
    r
}

/// `(line, problem codes)` of every row reported.
fn problems(reply: &Reply) -> Vec<(i64, Vec<String>)> {
    reply.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["line"].as_i64().unwrap(),
                row["problems"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["code"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

/// A file's rows as `(line, problem codes)`.
type Expected<'a> = &'a [(i64, &'a [&'a str])];

fn row(lines: Expected<'_>) -> Vec<(i64, Vec<String>)> {
    lines
        .iter()
        .map(|(line, codes)| (*line, codes.iter().map(|c| c.to_string()).collect()))
        .collect()
}

fn counts(reply: &Reply) -> [u64; 5] {
    let n = |k: &str| reply.body[k].as_u64().unwrap();
    [
        n("rows"),
        n("valid"),
        n("invalid"),
        n("imported"),
        n("skipped"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_example_file_is_valid_and_each_row_names_its_merchant_and_package() {
    let api = TestApi::new().await;
    let b = billing(&api).await;
    let r = dry_run(&api, "valid.csv").await;
    assert_eq!(counts(&r), [4, 4, 0, 0, 0]);
    assert_eq!(r.body["mode"], "dry_run");
    assert_eq!(r.body["import_id"], Value::Null);
    let rows = r.body["results"].as_array().unwrap();
    let view = |i: usize| &rows[i]["customer"];
    assert_eq!(rows[0]["line"], 2);
    assert_eq!(rows[0]["status"], "valid");
    assert_eq!(view(0)["merchant_id"], b.a.as_str());
    assert_eq!(view(0)["package_id"], b.packages[0].as_str());
    assert_eq!(view(0)["phone"], "6281234567890");
    assert_eq!(view(0)["nik"], "3201234567890001");
    assert_eq!(view(0)["register_date"], "2025-01-15");
    assert_eq!(view(1)["total"], 140_000);
    assert_eq!(view(1)["discount"], 10_000);
    assert_eq!(
        view(2)["merchant_id"],
        b.b.as_str(),
        "area = the merchant's name"
    );
    assert_eq!(view(2)["nik"], Value::Null);
    assert_eq!(view(3)["billing_day"], 20);
    assert_eq!(view(3)["total"], 80_000);
    // A dry run writes nothing.
    let again = dry_run(&api, "valid.csv").await;
    assert_eq!(counts(&again), [4, 4, 0, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_seed_rule_has_a_file_and_a_code() {
    let api = TestApi::new().await;
    billing(&api).await;
    let cases: &[(&str, Expected)] = &[
        ("unknown_area.csv", &[(2, &[]), (3, &["unknown_area"])]),
        (
            "unknown_package.csv",
            &[(2, &[]), (3, &["unknown_package"])],
        ),
        ("price_mismatch.csv", &[(2, &[]), (3, &["price_mismatch"])]),
        ("bad_phone.csv", &[(2, &[]), (3, &["bad_phone"]), (4, &[])]),
        (
            "dup_phone_in_file.csv",
            &[(2, &[]), (3, &["duplicate_phone_in_file"]), (4, &[])],
        ),
        (
            "billing_day.csv",
            &[
                (2, &["bad_billing_day"]),
                (3, &["bad_billing_day"]),
                (4, &[]),
            ],
        ),
        ("total_mismatch.csv", &[(2, &[]), (3, &["total_mismatch"])]),
        (
            "other_rules.csv",
            &[
                (3, &["bad_discount"]),
                (4, &["bad_discount"]),
                (5, &["bad_nik"]),
                (6, &["bad_register_date"]),
                (7, &["inactive_package"]),
                (8, &["missing_name"]),
                (9, &["bad_number"]),
                (10, &[]),
            ],
        ),
        ("quoted.csv", &[(2, &[]), (3, &[]), (4, &["bad_name"])]),
        (
            "unreadable.csv",
            &[(2, &[]), (3, &["unreadable"]), (4, &[])],
        ),
    ];
    for (name, expected) in cases {
        let r = dry_run(&api, name).await;
        assert_eq!(problems(&r), row(expected), "{name}: {}", r.body);
        let invalid = expected.iter().filter(|(_, c)| !c.is_empty()).count() as u64;
        assert_eq!(r.body["invalid"], invalid, "{name}");
        assert_eq!(r.body["rows"], expected.len() as u64, "{name}");
        for result in r.body["results"].as_array().unwrap() {
            let valid = result["problems"].as_array().unwrap().is_empty();
            assert_eq!(result["status"], if valid { "valid" } else { "invalid" });
            assert_eq!(result["customer"].is_null(), !valid, "{name}: {result}");
            for p in result["problems"].as_array().unwrap() {
                assert!(!p["message"].as_str().unwrap().is_empty());
            }
        }
    }

    // The problems name their column.
    let r = dry_run(&api, "billing_day.csv").await;
    assert_eq!(r.body["results"][0]["problems"][0]["field"], "tanggal");
    let r = dry_run(&api, "unknown_area.csv").await;
    assert_eq!(r.body["results"][1]["problems"][0]["field"], "area");
    // Quoted fields keep their commas and quotes; a case-insensitive area and package, and
    // an empty register date (today in Jakarta by the test clock), are fine.
    let r = dry_run(&api, "quoted.csv").await;
    assert_eq!(r.body["results"][0]["customer"]["name"], "Fauzi, Ahmad");
    assert_eq!(
        r.body["results"][1]["customer"]["name"],
        "Siti \"Ibu RT\" Nurhaliza"
    );
    let r = dry_run(&api, "other_rules.csv").await;
    assert_eq!(
        r.body["results"][7]["customer"]["register_date"],
        "2023-11-15"
    );
    // 08… is normalised.
    let r = dry_run(&api, "bad_phone.csv").await;
    assert_eq!(r.body["results"][2]["customer"]["phone"], "6281300000002");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bom_crlf_or_semicolon_file_reads_like_the_plain_one() {
    let api = TestApi::new().await;
    billing(&api).await;
    let plain = dry_run(&api, "valid.csv").await;
    for name in ["bom_crlf.csv", "semicolon.csv"] {
        let r = dry_run(&api, name).await;
        assert_eq!(counts(&r), [4, 4, 0, 0, 0], "{name}: {}", r.body);
        assert_eq!(r.body["results"], plain.body["results"], "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_writes_the_valid_rows_once_and_a_second_import_finds_them_taken() {
    let api = TestApi::new().await;
    let b = billing(&api).await;
    let r = upload(&api, fixture("unknown_area.csv"), "mode=import").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(counts(&r), [2, 1, 1, 1, 0]);
    let import_id = r.body["import_id"].as_str().unwrap().to_string();
    assert!(import_id.starts_with("imp_"));
    assert_eq!(
        problems(&r),
        row(&[(3, &["unknown_area"])]),
        "only what was not imported"
    );

    let r = upload(&api, fixture("valid.csv"), "mode=import").await;
    assert_eq!(counts(&r), [4, 3, 1, 3, 0], "{}", r.body);
    assert_eq!(problems(&r), row(&[(2, &["phone_taken"])]));

    // The same file again: every phone is taken now, nothing is written.
    let r = upload(&api, fixture("valid.csv"), "mode=import").await;
    assert_eq!(counts(&r), [4, 0, 4, 0, 0], "{}", r.body);
    assert!(
        problems(&r)
            .iter()
            .all(|(_, codes)| codes == &vec!["phone_taken".to_string()])
    );
    assert_eq!(r.body["import_id"], Value::Null);

    // A phone of the merchant in the database; the same phone is free at another merchant.
    let r = dry_run(&api, "dup_phone_in_db.csv").await;
    assert_eq!(problems(&r), row(&[(2, &["phone_taken"]), (3, &[])]));

    // The customers are there, with their area, through the customer-data export.
    let csv = customer_export(&api, Some(&b.a)).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with(
        "nama,telepon,diskon,tanggal,area,paket_nama,paket_tarif,total_bayar,nik,tanggal_register,id,"
    ));
    assert!(lines[1].starts_with(
        "Ahmad Fauzi,6281234567890,0,5,WiFi Sukamaju,Paket 10 Mbps,100000,100000,3201234567890001,2025-01-15,cus_"
    ), "{csv}");
    // The export reads back as an import of the same customers: all taken.
    let r = upload(&api, csv.into_bytes(), "mode=dry_run").await;
    assert_eq!(counts(&r), [2, 0, 2, 0, 0], "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_or_nothing_writes_nothing_when_a_row_is_invalid() {
    let api = TestApi::new().await;
    billing(&api).await;
    let r = upload(
        &api,
        fixture("unknown_area.csv"),
        "mode=import&all_or_nothing=true",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(counts(&r), [2, 1, 1, 0, 0]);
    assert_eq!(r.body["all_or_nothing"], true);
    let statuses: Vec<&str> = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["valid", "invalid"],
        "the valid row is left unwritten"
    );
    // Nothing was written: the valid row's phone is still free.
    let r = upload(
        &api,
        fixture("valid.csv"),
        "mode=import&all_or_nothing=true",
    )
    .await;
    assert_eq!(counts(&r), [4, 4, 0, 4, 0], "{}", r.body);
    assert_eq!(r.body["results"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_upload_is_refused_whole_naming_what_is_wrong() {
    let api = TestApi::new().await;
    billing(&api).await;
    let r = upload(&api, fixture("missing_column.csv"), "mode=dry_run").await;
    assert_envelope(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field(&r), "nik");

    let r = upload(&api, fixture("valid.csv"), "").await;
    assert_envelope(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field(&r), "mode");
    let r = upload(&api, fixture("valid.csv"), "mode=later").await;
    assert_eq!(field(&r), "mode");

    let r = upload(&api, Vec::new(), "mode=dry_run").await;
    assert_envelope(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(field(&r), "file");

    let r = api
        .post(
            "/api/v1/billing/customer-imports?mode=dry_run",
            json!({ "csv": "x" }),
        )
        .await;
    assert_envelope(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    // Over billing.import_max_bytes (5 MiB by default): 413 naming the file.
    let mut big = fixture("valid.csv");
    let line =
        b"Ahmad Fauzi,6281234567890,0,5,WiFi Sukamaju,Paket 10 Mbps,100000,100000,,2025-01-15\n";
    while big.len() <= 5 * 1024 * 1024 {
        big.extend_from_slice(line);
    }
    let r = upload(&api, big, "mode=dry_run").await;
    assert_envelope(&r, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    assert_eq!(field(&r), "file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_row_keeps_the_counts_not_the_customers() {
    let api = TestApi::new().await;
    billing(&api).await;
    let r = upload(&api, fixture("valid.csv"), "mode=import").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let import_id = r.body["import_id"].as_str().unwrap();
    let audit = api.get("/api/v1/audit-logs?action=billing.manage").await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    let rows = audit.body["items"].as_array().unwrap();
    let row = rows
        .iter()
        .find(|r| r["target"] == "/api/v1/billing/customer-imports")
        .unwrap_or_else(|| panic!("no audit row: {}", audit.body));
    let text = row.to_string();
    assert!(
        !text.contains("6281234567890"),
        "no phone in the audit: {text}"
    );
    assert!(!text.contains("Ahmad"), "no name in the audit: {text}");
    assert!(text.contains(import_id), "{text}");
    let after = &row["after"];
    assert_eq!(after["imported"], 4, "{text}");
    assert_eq!(after["rows"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_customer_exports_need_billing_management_on_every_route() {
    let api = TestApi::new().await;
    let b = billing(&api).await;
    let r = upload(&api, fixture("valid.csv"), "mode=import").await;
    assert_eq!(counts(&r), [4, 4, 0, 4, 0]);
    for (email, role) in [("finance@ops.test", "finance"), ("ops@ops.test", "ops")] {
        api.user(email, role, None).await;
    }
    let token = |email: &'static str| {
        let api = &api;
        async move {
            api.login(email).await["access_token"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let finance = token("finance@ops.test").await;
    let ops = token("ops@ops.test").await;

    // Finance may run export jobs, but not of customer data.
    let body = json!({ "kind": "billing_customers", "merchant_id": b.b });
    let r = api
        .call_as(
            Some(&finance),
            "POST",
            "/api/v1/exports",
            Some(body.clone()),
            None,
        )
        .await;
    assert_envelope(&r, StatusCode::FORBIDDEN, "forbidden");
    // Ops queues it on the billing route; finance cannot follow or fetch it on /exports.
    let r = api
        .call_as(
            Some(&ops),
            "POST",
            "/api/v1/billing/customer-exports",
            Some(json!({ "merchant_id": b.b })),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["kind"], "billing_customers");
    let id = r.body["id"].as_str().unwrap().to_string();
    for path in [
        format!("/api/v1/exports/{id}"),
        format!("/api/v1/exports/{id}/download"),
    ] {
        let r = api.call_as(Some(&finance), "GET", &path, None, None).await;
        assert_envelope(&r, StatusCode::FORBIDDEN, "forbidden");
    }
    let csv = wait_and_download(&api, Some(&ops), &id).await;
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(
        csv.contains("Budi Santoso") && csv.contains("Dewi Lestari"),
        "{csv}"
    );
    assert!(!csv.contains("Ahmad"), "only merchant B: {csv}");
    // A finance job is not a customer export.
    let r = api
        .call_as(
            Some(&finance),
            "POST",
            "/api/v1/exports",
            Some(json!({ "kind": "transactions" })),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let other = r.body["id"].as_str().unwrap();
    let r = api
        .call_as(
            Some(&ops),
            "GET",
            &format!("/api/v1/billing/customer-exports/{other}"),
            None,
            None,
        )
        .await;
    assert_envelope(&r, StatusCode::NOT_FOUND, "not_found");
}

/// Queues a customer export with the bootstrap token and returns the file.
async fn customer_export(api: &TestApi, merchant: Option<&str>) -> String {
    let r = api
        .post(
            "/api/v1/billing/customer-exports",
            json!({ "merchant_id": merchant }),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    wait_and_download(api, None, &id).await
}

async fn wait_and_download(api: &TestApi, token: Option<&str>, id: &str) -> String {
    let call = |path: String| async move {
        match token {
            Some(token) => api.call_as(Some(token), "GET", &path, None, None).await,
            None => api.get(&path).await,
        }
    };
    eventually(&format!("customer export {id} done"), || async {
        let r = call(format!("/api/v1/billing/customer-exports/{id}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        (r.body["status"] == "done").then_some(())
    })
    .await;
    let file = call(format!("/api/v1/billing/customer-exports/{id}/download")).await;
    assert_eq!(file.status, StatusCode::OK, "{}", file.body);
    file.body.as_str().unwrap().to_string()
}
