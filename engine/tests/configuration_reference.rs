//! docs/configuration.md against the configuration structs: every key of
//! `ordo.toml` is documented, nothing documented is missing from the
//! code, and every documented default is the code's.

use std::collections::BTreeMap;

use ordo_engine::node::NodeConfig;
use serde_json::Value;

/// `key` → default as the page writes it (`required` for keys without
/// one), from a config whose optional keys are all set.
fn keys_in_code() -> BTreeMap<String, Option<Value>> {
    let mut full = NodeConfig::cluster(2, 7000, 1).unwrap().remove(0);
    let addr = full.client_addr;
    full.listen.client = Some(addr);
    full.listen.peer = Some(addr);
    full.listen.gossip = Some(addr);
    let full = serde_json::to_value(&full).unwrap();
    let mut keys = BTreeMap::new();
    flatten("", &full, &mut keys);
    // Defaults: a minimal config (the required keys only) read back.
    let minimal = r#"
        id = 1
        cluster_id = 1
        data_dir = "data"
        client_addr = "127.0.0.1:7000"
        peer_addr = "127.0.0.1:7100"
        peers = []
    "#;
    let defaults: NodeConfig = toml::from_str(minimal).unwrap();
    let defaults = serde_json::to_value(&defaults).unwrap();
    let mut default_values = BTreeMap::new();
    flatten("", &defaults, &mut default_values);
    let required = [
        "id",
        "cluster_id",
        "data_dir",
        "client_addr",
        "peer_addr",
        "peers",
    ];
    keys.into_keys()
        .map(|key| {
            let default = if required.contains(&key.as_str()) || key.starts_with("peers.") {
                None
            } else {
                Some(default_values.remove(&key).flatten().unwrap_or(Value::Null))
            };
            (key, default)
        })
        .collect()
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Option<Value>>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match value {
                    Value::Object(_) => flatten(&path, value, out),
                    Value::Array(items) if items.first().is_some_and(Value::is_object) => {
                        out.insert(path.clone(), Some(Value::Null));
                        flatten(&path, &items[0], out);
                    }
                    other => {
                        out.insert(path, Some(other.clone()));
                    }
                }
            }
        }
        other => {
            out.insert(prefix.to_string(), Some(other.clone()));
        }
    }
}

/// `key` → the default column, from the page's tables.
fn keys_in_docs() -> BTreeMap<String, String> {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .unwrap();
    page.lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_string(),
                cells[3].trim_matches('`').to_string(),
            )
        })
        .collect()
}

fn as_written(value: &Option<Value>) -> String {
    match value {
        None => "required".into(),
        Some(Value::Null) => "unset".into(),
        Some(Value::String(text)) => format!("\"{text}\""),
        Some(other) => other.to_string(),
    }
}

#[test]
fn every_key_is_documented_with_its_default() {
    let code = keys_in_code();
    let docs = keys_in_docs();
    let undocumented: Vec<&String> = code.keys().filter(|k| !docs.contains_key(*k)).collect();
    assert!(
        undocumented.is_empty(),
        "keys missing from docs/configuration.md: {undocumented:?}"
    );
    let unknown: Vec<&String> = docs.keys().filter(|k| !code.contains_key(*k)).collect();
    assert!(
        unknown.is_empty(),
        "documented keys the code does not have: {unknown:?}"
    );
    for (key, default) in &code {
        if key == "peers" {
            continue;
        }
        assert_eq!(docs[key], as_written(default), "default of {key}");
    }
    assert!(code.len() >= 45, "{} keys", code.len());
}
