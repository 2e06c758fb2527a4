//! Every unknown key at once: when the typed parse fails, the document is read again as a
//! generic tree of spanned keys and walked against the JSON Schema generated from the model,
//! so a spec with three misspelt keys gets three "did you mean" errors, not one.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::Issue;
use super::model::Spanned;
use crate::suggest::closest;

/// A YAML node with only what the key walk needs.
enum Node {
    Map(Vec<(Spanned<String>, Node)>),
    Seq(Vec<Node>),
    Other,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value = map.next_value::<Node>()?;
            let text = Spanned::new(key.value.0, key.referenced, key.defined);
            entries.push((text, value));
        }
        Ok(Node::Map(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Other)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Other)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Other)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
}

/// A mapping key as text, whatever scalar type YAML gave it.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".into()))
            }
        }
        deserializer
            .deserialize_any(KeyVisitor)
            .or_else(|_: D::Error| Ok(KeyText(String::new())))
    }
}

/// Every key of `text` that the spec schema does not know, with suggestions. Empty when the
/// text does not parse as YAML at all (the caller already reports that).
pub(super) fn unknown_keys(text: &str, options: serde_saphyr::Options) -> Vec<Issue> {
    let Ok(root) = serde_saphyr::from_str_with_options::<Node>(text, options) else {
        return Vec::new();
    };
    let schema =
        serde_json::to_value(schemars::schema_for!(super::model::Spec)).unwrap_or(Value::Null);
    let mut issues = Vec::new();
    walk(&root, &schema, &schema, "", text, &mut issues);
    issues
}

fn walk(
    node: &Node,
    schema: &Value,
    root: &Value,
    path: &str,
    text: &str,
    issues: &mut Vec<Issue>,
) {
    let schema = resolve(schema, root);
    match node {
        Node::Map(entries) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            let known: Vec<&str> = props.keys().map(String::as_str).collect();
            for (key, value) in entries {
                let child = if path.is_empty() {
                    key.value.clone()
                } else {
                    format!("{path}.{}", key.value)
                };
                match props.get(&key.value) {
                    Some(sub) => walk(value, sub, root, &child, text, issues),
                    None => issues.push(Issue::at(
                        &key.referenced,
                        text,
                        path,
                        unknown_key(&key.value, &known),
                    )),
                }
            }
        }
        Node::Seq(items) => {
            let Some(sub) = schema.get("items") else {
                return;
            };
            for (i, item) in items.iter().enumerate() {
                walk(item, sub, root, &format!("{path}[{i}]"), text, issues);
            }
        }
        Node::Other => {}
    }
}

/// Follows `$ref` and picks the object or array branch of `anyOf`/`oneOf`.
fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    if let Some(name) = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        return root
            .get("$defs")
            .and_then(|d| d.get(name))
            .map_or(schema, |s| resolve(s, root));
    }
    let branches = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array);
    let Some(branches) = branches else {
        return schema;
    };
    branches
        .iter()
        .map(|b| resolve(b, root))
        .find(|b| b.get("properties").is_some() || b.get("items").is_some())
        .unwrap_or(schema)
}

fn unknown_key(key: &str, known: &[&str]) -> String {
    match closest(key, known) {
        Some(hint) => format!("unknown key `{key}`; did you mean `{hint}`?"),
        None => format!("unknown key `{key}`; expected one of {}", known.join(", ")),
    }
}
