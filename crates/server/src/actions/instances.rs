//! `DescribeDBInstances` and `DescribeDBInstanceAttribute`: the caller's configured instances.

use super::Ctx;
use gpdiag_core::Instance;
use gpdiag_wire::api::instances::*;
use gpdiag_wire::ApiError;

/// Instances report as AnalyticDB for PostgreSQL does.
const ENGINE: &str = "gpdb";

pub fn describe_db_instances(
    ctx: &Ctx<'_>,
    req: DescribeDBInstancesRequest,
) -> DescribeDBInstancesResponse {
    let matching: Vec<_> = ctx
        .app
        .registry
        .instances_of(ctx.caller.account())
        .into_iter()
        .filter(|i| i.region == req.region_id)
        .filter(|i| req.instance_ids.is_empty() || req.instance_ids.iter().any(|id| *id == i.id))
        .filter(|i| {
            req.statuses.is_empty()
                || req
                    .statuses
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(&i.status))
        })
        .filter(|i| req.modes.is_empty() || req.modes.contains(&i.mode))
        .filter(|i| {
            req.description
                .as_ref()
                .is_none_or(|d| i.description.contains(d.as_str()))
        })
        .collect();
    let total = matching.len();
    let skip = (req.page_number as usize - 1).saturating_mul(req.page_size as usize);
    let page: Vec<_> = matching
        .iter()
        .skip(skip)
        .take(req.page_size as usize)
        .map(|i| db_instance(i))
        .collect();
    DescribeDBInstancesResponse {
        page_number: req.page_number,
        page_record_count: page.len() as u32,
        total_record_count: total as u32,
        items: DBInstanceItems { db_instance: page },
    }
}

pub fn describe_db_instance_attribute(
    ctx: &Ctx<'_>,
    req: DescribeDBInstanceAttributeRequest,
) -> Result<DescribeDBInstanceAttributeResponse, ApiError> {
    let i = ctx.instance(&req.instance_id)?;
    Ok(DescribeDBInstanceAttributeResponse {
        items: DBInstanceAttributeItems {
            db_instance_attribute: vec![DBInstanceAttribute {
                db_instance_id: i.id.clone(),
                db_instance_description: i.description.clone(),
                db_instance_mode: i.mode.as_str().into(),
                db_instance_status: i.status.clone(),
                engine: ENGINE.into(),
                engine_version: i.engine_version.clone(),
                core_version: i.core_version_text.clone(),
                minor_version: minor_version(&i),
                region_id: i.region.clone(),
                creation_time: iso_time(&i),
                tags: Tags::default(),
            }],
        },
    })
}

fn db_instance(i: &Instance) -> DBInstance {
    DBInstance {
        db_instance_id: i.id.clone(),
        db_instance_description: i.description.clone(),
        db_instance_mode: i.mode.as_str().into(),
        db_instance_status: i.status.clone(),
        engine: ENGINE.into(),
        engine_version: i.engine_version.clone(),
        region_id: i.region.clone(),
        create_time: iso_time(i),
        tags: Tags::default(),
    }
}

/// The dotted numbers of the core version, e.g. `6.3.10.1`.
fn minor_version(i: &Instance) -> String {
    i.core_version
        .parts()
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn iso_time(i: &Instance) -> String {
    i.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
