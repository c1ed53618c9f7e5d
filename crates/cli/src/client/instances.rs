//! `gpdiag instances list` and `gpdiag instances show ID`.

use super::output::{self, TableOrJson};
use super::{Client, ClientArgs, Outcome};
use clap::Subcommand;
use gpdiag_wire::api::instances::{
    DBInstance, DescribeDBInstanceAttributeResponse, DescribeDBInstancesResponse,
};

#[derive(Subcommand, Debug)]
pub enum InstancesCommand {
    /// List the instances your key can see in the region (DescribeDBInstances, all pages).
    #[command(after_help = "Examples:\n  \
gpdiag instances list\n  \
gpdiag instances list --region cn-shanghai --output json\n  \
gpdiag instances list --profile prod")]
    List {
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        output: TableOrJson,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one instance (DescribeDBInstanceAttribute), including its core version.
    #[command(after_help = "Examples:\n  \
gpdiag instances show gp-bp1analytics01\n  \
gpdiag instances show gp-bp1analytics01 --output json")]
    Show {
        /// The instance ID.
        id: String,
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        output: TableOrJson,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// The largest page DescribeDBInstances serves.
const PAGE_SIZE: u32 = 100;

pub async fn run(command: InstancesCommand) -> Outcome {
    match command {
        InstancesCommand::List { output, client } => {
            let client = Client::from_args(&client)?;
            list(&client, output).await
        }
        InstancesCommand::Show { id, output, client } => {
            let client = Client::from_args(&client)?;
            show(&client, &id, output).await
        }
    }
}

async fn list(client: &Client, format: TableOrJson) -> Outcome {
    let mut all: Vec<DBInstance> = Vec::new();
    for page in 1u32.. {
        let page_text = page.to_string();
        let size = PAGE_SIZE.to_string();
        let reply: DescribeDBInstancesResponse = client
            .call(
                "DescribeDBInstances",
                &super::pairs([
                    ("RegionId", client.region.as_str()),
                    ("PageNumber", page_text.as_str()),
                    ("PageSize", size.as_str()),
                ]),
            )
            .await?;
        let got = reply.items.db_instance.len();
        all.extend(reply.items.db_instance);
        if got == 0 || all.len() >= reply.total_record_count as usize {
            break;
        }
    }
    match format {
        TableOrJson::Json => output::print_json(&all),
        TableOrJson::Table => {
            if all.is_empty() {
                client.ui.note(&format!(
                    "no instances in region {} for this key (try --region)",
                    client.region
                ));
            }
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|i| {
                    vec![
                        output::cell(&i.db_instance_id),
                        output::cell(&i.db_instance_status),
                        output::cell(&i.db_instance_mode),
                        output::cell(&i.engine_version),
                        output::cell(&i.region_id),
                        output::cell(&i.create_time),
                        output::shorten(&i.db_instance_description, 60),
                    ]
                })
                .collect();
            output::print_text(&output::table(
                &[
                    "ID",
                    "STATUS",
                    "MODE",
                    "ENGINE",
                    "REGION",
                    "CREATED",
                    "DESCRIPTION",
                ],
                &rows,
            ))
        }
    }
}

async fn show(client: &Client, id: &str, format: TableOrJson) -> Outcome {
    let reply: DescribeDBInstanceAttributeResponse = client
        .call(
            "DescribeDBInstanceAttribute",
            &super::pairs([("DBInstanceId", id)]),
        )
        .await?;
    let Some(i) = reply.items.db_instance_attribute.into_iter().next() else {
        return Err(super::Failure::new(
            super::Exit::Server,
            format!("DescribeDBInstanceAttribute answered no attributes for {id}"),
        ));
    };
    match format {
        TableOrJson::Json => output::print_json(&i),
        TableOrJson::Table => {
            let tags = i
                .tags
                .tag
                .iter()
                .map(|t| format!("{}={}", t.key, t.value))
                .collect::<Vec<_>>()
                .join(", ");
            let rows: Vec<Vec<String>> = [
                ("DBInstanceId", &i.db_instance_id),
                ("Description", &i.db_instance_description),
                ("Status", &i.db_instance_status),
                ("Mode", &i.db_instance_mode),
                ("Engine", &i.engine),
                ("EngineVersion", &i.engine_version),
                ("CoreVersion", &i.core_version),
                ("MinorVersion", &i.minor_version),
                ("RegionId", &i.region_id),
                ("CreationTime", &i.creation_time),
                ("Tags", &tags),
            ]
            .iter()
            .map(|(k, v)| vec![(*k).to_owned(), output::cell(v)])
            .collect();
            output::print_text(&output::table(&["FIELD", "VALUE"], &rows))
        }
    }
}
