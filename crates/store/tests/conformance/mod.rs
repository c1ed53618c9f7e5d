//! The store conformance suite: every back end runs these same checks through `run_all`.

mod accounts;
mod collectors;
mod records;
mod tasks;

use gpdiag_store::Store;

/// Every check, in an order that lets them share one store (their names do not overlap).
pub async fn run_all(store: &dyn Store) {
    accounts::keys_round_trip(store).await;
    accounts::instances_are_replaced_as_a_set(store).await;
    records::upsert_replaces_by_instance_and_query_id(store).await;
    records::long_sql_is_stored_whole(store).await;
    records::searches_match_the_reference_semantics(store).await;
    records::paging_edges(store).await;
    records::dimensions_all_time_and_windowed(store).await;
    tasks::tasks_are_created_under_a_per_account_limit(store).await;
    tasks::leases_fence_workers(store).await;
    tasks::renewals_report_progress_without_changing_the_generation(store).await;
    tasks::retention_and_audit(store).await;
    tasks::streams_match_paged_search(store).await;
    tasks::settings_are_created_once(store).await;
    collectors::leases_admit_one_collector(store).await;
    collectors::finished_records_settle_running_ones(store).await;
    collectors::a_record_read_again_without_its_plan_keeps_it(store).await;
}
