//! `gpdiag call ACTION Key=Value ...`: any action, signed, its JSON answer printed as it came
//! (indented), like the aliyun CLI. Common parameters (Version, signature, time, nonce) are added.

use super::{Client, ClientArgs, Failure, Outcome};
use clap::Args;

#[derive(Args, Debug)]
#[command(
    after_help = "Values are sent as they are; quote them for the shell.\n\n\
Examples:\n  \
gpdiag call DescribeDBInstances RegionId=cn-hangzhou\n  \
gpdiag call DescribeDiagnosisDimensions DBInstanceId=gp-bp1analytics01\n  \
gpdiag call DescribeDiagnosisRecords DBInstanceId=gp-bp1analytics01 Database=sales \\\n    \
StartTime=2026-01-02T00:00Z EndTime=2026-01-02T06:00Z 'QueryCondition={\"Type\":\"maxCost\",\"Value\":\"10\"}'\n  \
gpdiag call DescribeDownloadRecords DBInstanceId=gp-bp1analytics01 --signature v1"
)]
pub struct CallArgs {
    /// The action, e.g. DescribeDBInstances.
    pub action: String,
    /// Business parameters as Name=Value (the first = separates them).
    #[arg(value_name = "Name=Value")]
    pub params: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `Name=Value` arguments as pairs; the name must be non-empty.
pub fn parse_params(args: &[String]) -> Outcome<Vec<(String, String)>> {
    args.iter()
        .map(|arg| match arg.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
            _ => Err(Failure::usage(format!(
                "{arg:?} is not Name=Value (e.g. DBInstanceId=gp-bp1analytics01)"
            ))),
        })
        .collect()
}

pub async fn run(args: CallArgs) -> Outcome {
    if args.action.is_empty() || !args.action.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Failure::usage(format!(
            "{:?} is not an action name (e.g. DescribeDBInstances)",
            args.action
        )));
    }
    let params = parse_params(&args.params)?;
    let client = Client::from_args(&args.client)?;
    let reply = client.call_raw(&args.action, &params).await?;
    match serde_json::from_str::<serde_json::Value>(&reply.body) {
        Ok(value) => super::output::print_json(&value),
        // Format=XML, for one: print what came.
        Err(_) => super::output::print_text(&format!("{}\n", reply.body.trim_end())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_split_at_the_first_equals_sign() {
        let p = parse_params(&[
            "DBInstanceId=gp-1".into(),
            r#"QueryCondition={"Type":"cost","Min":"1"}"#.into(),
            "Keyword=a=b".into(),
            "Empty=".into(),
        ])
        .unwrap();
        assert_eq!(p[0], ("DBInstanceId".into(), "gp-1".into()));
        assert_eq!(p[2], ("Keyword".into(), "a=b".into()));
        assert_eq!(p[3], ("Empty".into(), String::new()));
        for bad in ["novalue", "=x"] {
            let e = parse_params(&[bad.into()]).unwrap_err();
            assert_eq!(e.exit, super::super::Exit::Usage, "{bad}");
        }
    }
}
