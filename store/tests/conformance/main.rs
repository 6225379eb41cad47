//! One conformance suite for every `Store` backend.
//!
//! Each function in `suite` states a behaviour of the `Store` trait; `conformance!` turns
//! every one into a test per backend, each against a fresh database (a new SQLite file, or a
//! new PostgreSQL database in the throwaway cluster named by `GEMA_TEST_POSTGRES_URL`).

mod auth;
mod backends;
mod billing;
mod billing_finance;
mod billing_import;
mod claims;
mod cluster;
mod device_ops;
mod exports;
mod monitoring;
mod payments;
mod reconciliation;
mod settlement;
mod suite;

macro_rules! conformance {
    ($backend:ident, $open:path) => {
        mod $backend {
            conformance!(@tests $open, suite;
                migrations_apply_once,
                merchants_round_trip_and_patch,
                merchant_lists_page_by_cursor_and_filter,
                merchant_transitions_follow_the_rules,
                outlets_need_an_existing_merchant,
                terminal_labels_are_unique_per_outlet,
                device_serials_are_unique,
                device_credentials_rotate_and_revoke,
                device_certificates_revoke_supersede_and_follow_the_credential,
                binding_follows_the_rules_and_keeps_history,
                failed_binds_leave_nothing_behind,
                concurrent_binds_to_one_terminal_let_one_win,
                admin_tokens_are_found_by_hash_until_revoked,
                unknown_ids_are_not_found
            );
            conformance!(@tests $open, auth;
                users_round_trip_and_emails_are_unique,
                refresh_rotates_and_reuse_revokes_the_family,
                a_used_session_slides_but_not_past_its_refresh_expiry,
                sessions_revoke_per_user_and_on_password_change,
                login_failures_count_in_a_window,
                audit_entries_filter_and_page,
                terminal_and_device_lists_filter_by_merchant,
                idempotency_keys_claim_replay_and_expire,
                concurrent_claims_of_one_key_start_once,
                api_tokens_have_roles_and_revoke,
                totp_sets_up_enables_refuses_replays_and_spends_recovery_codes,
                users_disable_end_sessions_but_never_the_last_admin,
                an_audit_scope_writes_one_row_with_its_first_committed_write
            );
            conformance!(@tests_with_url $open, auth;
                a_write_whose_audit_row_fails_is_rolled_back
            );
            conformance!(@tests $open, payments;
                a_paid_event_posts_the_ledger_and_queues_one_announcement,
                a_handed_over_announcement_is_not_due_until_its_lease_passes,
                a_repeated_event_changes_nothing,
                concurrent_copies_of_one_event_apply_once,
                stale_and_mismatched_events_are_recorded_not_applied,
                paid_after_expiry_wins_and_is_flagged,
                a_refund_reverses_the_ledger,
                a_refund_of_another_amount_reverses_what_was_posted,
                unknown_orders_leave_no_trace_but_the_inbox,
                a_static_qr_payment_creates_its_transaction,
                concurrent_payments_number_one_devices_announcements_once,
                no_bound_device_is_recorded_not_lost,
                transactions_page_newest_first_by_keyset,
                test_notifications_touch_nothing,
                deliveries_are_recorded,
                transactions_need_an_approved_terminal_and_a_fresh_order_ref,
                a_batch_commits_together_and_undoes_only_its_bad_events,
                one_batch_sees_its_own_earlier_events,
                a_failing_event_fails_alone,
                a_batch_of_delivery_results_is_recorded_like_single_ones,
                events_and_delivery_results_commit_together
            );
            conformance!(@tests_with_url $open, payments;
                results_that_cannot_be_written_fail_the_whole_batch,
                a_payment_after_the_database_ended_its_sessions_is_applied,
                a_payments_copies_of_its_merchant_and_terminal_must_be_its_transactions
            );
            conformance!(@tests $open, device_ops;
                heartbeats_keep_a_bounded_history,
                presence_keeps_the_newest_change,
                presence_batches_write_many_devices_at_once,
                desired_config_versions_guard_concurrent_writers,
                a_report_before_any_desired_config_is_kept,
                commands_move_through_their_states_once,
                qr_requests_are_kept_once_and_closed_when_their_transaction_moves,
                failed_announcements_are_counted_per_device,
                pending_config_pushes_page_past_the_oldest
            );
            conformance!(@tests $open, settlement;
                balances_add_up_through_random_operations,
                concurrent_generations_never_batch_an_entry_twice,
                the_batch_lifecycle_follows_its_rules
            );
            conformance!(@tests $open, billing;
                concurrent_runs_make_one_invoice_per_customer_and_period,
                concurrent_payments_of_one_invoice_let_one_win,
                an_invoice_qris_payment_is_applied_once,
                concurrent_pay_pages_share_one_invoice_qris,
                packages_in_use_stay_and_phones_are_unique_per_merchant
            );
            conformance!(@tests $open, reconciliation;
                reconciliation_runs_keep_every_row_in_order_and_count_them,
                matching_finds_transactions_by_order_ref_provider_id_and_creation_time
            );
            conformance!(@tests_with_url $open, billing_import;
                billing_import_writes_customers_with_their_history_and_skips_what_changed,
                billing_customers_export_pages_by_id_with_package_and_area
            );
            conformance!(@tests $open, monitoring;
                the_monitoring_snapshot_counts_pending_rows_their_age_and_paused_senders
            );
            conformance!(@tests $open, claims;
                claims_round_trip_list_and_revoke,
                concurrent_provisionings_never_pass_the_use_limit,
                concurrent_provisionings_of_one_serial_let_one_win,
                a_serial_is_provisioned_again_only_when_allowed,
                expired_revoked_and_unknown_claims_provision_nothing
            );
            conformance!(@tests $open, cluster;
                nodes_register_heartbeat_and_stop,
                a_lease_has_one_holder_until_it_expires,
                concurrent_lease_takers_let_one_win,
                a_shared_secret_keeps_its_first_value,
                sessions_record_the_holding_node_and_fence_old_epochs,
                signals_reach_every_listener
            );
            conformance!(@tests $open, exports;
                an_export_is_claimed_once_and_progresses_only_under_its_claim,
                an_interrupted_export_is_taken_over_then_failed_after_its_attempts,
                a_restarted_node_queues_its_running_exports_again,
                concurrent_claimers_take_each_export_once,
                export_rows_page_by_id_and_filter_by_merchant_time_and_type,
                bench_seeding_writes_ordered_ledger_rows
            );
            conformance!(@tests $open, billing_finance;
                billing_settings_keep_a_write_only_secret_and_a_separate_logo,
                billing_receipts_are_found_only_for_paid_invoices,
                billing_finance_totals_revenue_and_growth_add_up
            );
        }
    };
    (@tests_with_url $open:path, $module:ident; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let db = $open().await;
                crate::$module::$name(db.store.clone(), &db.url).await;
            }
        )*
    };
    (@tests $open:path, $module:ident; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let db = $open().await;
                crate::$module::$name(db.store.clone()).await;
            }
        )*
    };
}

conformance!(sqlite, crate::backends::sqlite);

#[cfg(feature = "postgres-tests")]
conformance!(postgres, crate::backends::postgres);
