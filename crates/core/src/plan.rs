//! Facts derived from a captured plan (EXPLAIN ANALYZE, FORMAT JSON, as auto_explain logs it).

use serde_json::{json, Value};

/// The plan's operators, most expensive first: one object per node with its type, relation (if
/// any), actual total time (ms), rows and loops. `[]` when there is no plan or it is not JSON.
/// This is what `SortedMetrics` reports: where the time went, without reading the whole plan.
pub fn sorted_metrics(plan_json: Option<&str>) -> String {
    let Some(plan) = plan_json.and_then(|p| serde_json::from_str::<Value>(p).ok()) else {
        return "[]".into();
    };
    let mut nodes = Vec::new();
    // auto_explain logs `{"Query Text": …, "Plan": {…}}`; EXPLAIN prints `[{"Plan": {…}}]`.
    let roots: Vec<&Value> = match &plan {
        Value::Array(items) => items.iter().filter_map(|i| i.get("Plan")).collect(),
        other => other.get("Plan").into_iter().collect(),
    };
    for root in roots {
        collect(root, &mut nodes);
    }
    nodes.sort_by(|a, b| {
        let time = |v: &Value| v["ActualTotalTime"].as_f64().unwrap_or(0.0);
        time(b).total_cmp(&time(a))
    });
    Value::Array(nodes).to_string()
}

fn collect(node: &Value, out: &mut Vec<Value>) {
    let Some(node_type) = node.get("Node Type").and_then(Value::as_str) else {
        return;
    };
    let mut metric = json!({
        "NodeType": node_type,
        "ActualTotalTime": node.get("Actual Total Time").and_then(Value::as_f64).unwrap_or(0.0),
        "ActualRows": node.get("Actual Rows").and_then(Value::as_f64).unwrap_or(0.0),
        "ActualLoops": node.get("Actual Loops").and_then(Value::as_f64).unwrap_or(0.0),
    });
    if let Some(relation) = node.get("Relation Name").and_then(Value::as_str) {
        metric["RelationName"] = relation.into();
    }
    out.push(metric);
    for child in node
        .get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        collect(child, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_come_out_most_expensive_first() {
        let plan = r#"{"Query Text":"select","Plan":{"Node Type":"Hash Join","Actual Total Time":5.0,"Actual Rows":10,"Actual Loops":1,
            "Plans":[{"Node Type":"Seq Scan","Relation Name":"t","Actual Total Time":4.5,"Actual Rows":100,"Actual Loops":1},
                     {"Node Type":"Hash","Actual Total Time":0.2,"Actual Rows":3,"Actual Loops":1}]}}"#;
        let metrics: Vec<Value> = serde_json::from_str(&sorted_metrics(Some(plan))).unwrap();
        let types: Vec<_> = metrics
            .iter()
            .map(|m| m["NodeType"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["Hash Join", "Seq Scan", "Hash"]);
        assert_eq!(metrics[1]["RelationName"], "t");
    }

    #[test]
    fn no_plan_or_garbage_gives_an_empty_list() {
        assert_eq!(sorted_metrics(None), "[]");
        assert_eq!(sorted_metrics(Some("not json")), "[]");
        assert_eq!(
            sorted_metrics(Some(r#"[{"Plan":{"Node Type":"Result"}}]"#))
                .matches("Result")
                .count(),
            1
        );
    }
}
