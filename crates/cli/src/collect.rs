//! `gpdiag collect --once`: read what the configured instances' log directories hold now,
//! store it, and exit (for cron and batch use; `gpdiag serve` collects continuously).

use anyhow::Context;
use gpdiag_ingest::collect::{host_name, Collector};
use gpdiag_server::config::Config;

pub async fn collect_once(config: &Config, only: Option<&str>) -> anyhow::Result<()> {
    let env = |k: &str| std::env::var(k).ok();
    config.validate(env)?;
    let chosen: Vec<_> = config
        .instances
        .iter()
        .filter(|i| only.is_none_or(|id| i.id == id))
        .filter_map(|i| i.collect.as_ref().map(|c| (i, c)))
        .filter(|(_, c)| c.log_dir.is_some())
        .collect();
    if chosen.is_empty() {
        match only {
            Some(id) => anyhow::bail!(
                "instance {id} has no [instances.collect] log_dir in the configuration"
            ),
            None => anyhow::bail!("no instance has an [instances.collect] log_dir to read"),
        }
    }
    let store = gpdiag_store::open(&config.storage.url)
        .await
        .context("cannot open the store")?;
    let owner = format!("{}:collect-once:{}", host_name(), std::process::id());
    let mut failed = 0;
    for (instance, settings) in chosen {
        // --once reads logs only: a snapshot of running queries would go stale when it exits.
        let collector = Collector::new(
            &instance.id,
            settings.clone(),
            None,
            store.clone(),
            owner.clone(),
        );
        match collector.once().await {
            Ok(report) => {
                let t = report.tail;
                println!(
                    "{}: {} files, {} bytes read, {} records, {} unreadable log records skipped",
                    instance.id, t.files, t.bytes, t.records, t.bad_records
                );
            }
            Err(e) => {
                eprintln!("{}: {e}", instance.id);
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} instance(s) could not be collected");
    }
    Ok(())
}
