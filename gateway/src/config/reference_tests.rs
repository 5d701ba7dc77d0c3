//! `docs/CONFIGURATION.md` is the complete reference: every key of every
//! table of [`raw::File`] has a row in the section of its table, and every
//! row names a key that exists.
//!
//! The schema is not kept by hand. A probing [`serde::Deserializer`] walks
//! the raw structs: serde's derived code hands `deserialize_struct` the
//! struct's field names, and the probe then offers exactly one field, so
//! that the field's own type is deserialized next. Starting from the top and
//! following every field that turns out to be a table gives every table
//! path (`listeners.tls.certificates`, …) with its keys, straight from the
//! code. A new key in `raw.rs` (or in `identity.rs`, `signing.rs`, …) that
//! the reference lacks fails this test.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::de::{self, value, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::raw;

/// A struct as serde sees it: its name and its keys.
type Shape = (&'static str, &'static [&'static str]);

/// Deserializes along `path` (one key per table) and records the shape of
/// the struct at its end. Everything that is not a struct, an option or a
/// sequence on the way is a leaf: the probe refuses it, which ends the run.
struct Probe<'a> {
    path: &'a [&'static str],
    found: &'a RefCell<Option<Shape>>,
}

fn leaf() -> value::Error {
    de::Error::custom("leaf")
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, value::Error> {
        Err(leaf())
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, value::Error> {
        match self.path.split_first() {
            None => {
                *self.found.borrow_mut() = Some((name, fields));
                Err(leaf())
            }
            Some((key, rest)) if fields.contains(key) => visitor.visit_map(OneKey {
                key: Some(key),
                value: Some(Probe {
                    path: rest,
                    found: self.found,
                }),
            }),
            Some(_) => Err(leaf()),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, value::Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, value::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, value::Error> {
        visitor.visit_seq(OneElement(Some(self)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// A table with exactly one key.
struct OneKey<'a> {
    key: Option<&'static str>,
    value: Option<Probe<'a>>,
}

impl<'de> MapAccess<'de> for OneKey<'_> {
    type Error = value::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, value::Error> {
        match self.key.take() {
            Some(k) => seed.deserialize(k.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, value::Error> {
        let probe = self.value.take().ok_or_else(leaf)?;
        seed.deserialize(probe)
    }
}

/// An array with exactly one element.
struct OneElement<'a>(Option<Probe<'a>>);

impl<'de> SeqAccess<'de> for OneElement<'_> {
    type Error = value::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, value::Error> {
        match self.0.take() {
            Some(p) => seed.deserialize(p).map(Some),
            None => Ok(None),
        }
    }
}

/// Every table of the configuration file, by key path (`[]` is the file
/// itself), with the struct behind it.
fn schema() -> BTreeMap<Vec<&'static str>, Shape> {
    let mut tables = BTreeMap::new();
    let mut queue = VecDeque::from([Vec::new()]);
    while let Some(path) = queue.pop_front() {
        assert!(path.len() < 8, "runaway schema walk at {path:?}");
        let found = RefCell::new(None);
        let _ = raw::File::deserialize(Probe {
            path: &path,
            found: &found,
        });
        if let Some(shape) = found.into_inner() {
            for key in shape.1 {
                let mut child = path.clone();
                child.push(*key);
                queue.push_back(child);
            }
            tables.insert(path, shape);
        }
    }
    tables
}

/// The reference's sections: for each heading that names a table
/// (`` ## `[[listeners]]`: … ``, `` ### `[routes.auth]` ``), the table's
/// dotted path and the keys of its rows (`` | `key` | … ``; a row may name
/// several: `` | `display_name`, `display_name_en` | ``).
fn sections(doc: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        if line.starts_with('#') {
            current = line.split('`').nth(1).and_then(|code| {
                let inner = code.trim_start_matches('[').trim_end_matches(']');
                (code.starts_with('[') && code.ends_with(']')).then(|| inner.to_owned())
            });
            if let Some(table) = &current {
                out.entry(table.clone()).or_default();
            }
            continue;
        }
        let (Some(table), Some(row)) = (&current, line.strip_prefix("| `")) else {
            continue;
        };
        let first_cell = row.split(" |").next().unwrap_or("");
        let keys = format!("`{first_cell}")
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect::<Vec<_>>();
        out.entry(table.clone()).or_default().extend(keys);
    }
    out
}

#[test]
fn the_schema_walk_finds_every_table() {
    let tables = schema();
    // Spot checks that the walk goes through options, arrays and the
    // tables of other modules; if these fail, the probe is broken, not the
    // reference.
    for (path, key) in [
        (vec![], "listeners"),
        (vec!["keys"], "tpm_queue_capacity"),
        (vec!["listeners", "tls", "certificates"], "leaf_lifetime"),
        (vec!["admin", "tls", "client_auth"], "mode"),
        (vec!["identity", "providers"], "client_key"),
        (vec!["routes", "sign"], "format"),
        (vec!["routes", "paths"], "merge_slashes"),
        (vec!["signing"], "delegation_algorithm"),
    ] {
        let (_, keys) = tables
            .get(&path)
            .unwrap_or_else(|| panic!("no table {path:?} in {:?}", tables.keys()));
        assert!(keys.contains(&key), "{path:?} lacks {key}: {keys:?}");
    }
    assert!(
        !tables.contains_key(&vec!["routes", "response_headers"]),
        "free-form tables have no schema"
    );
}

#[test]
fn configuration_md_documents_every_key_and_no_other() {
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CONFIGURATION.md");
    let doc = std::fs::read_to_string(doc_path).unwrap();
    let documented = sections(&doc);
    let tables = schema();
    let dotted = |path: &[&str]| path.join(".");
    // One struct may be several tables (`[admin.tls]` is `[listeners.tls]`):
    // it is documented once, under any of its paths.
    let mut by_shape: BTreeMap<Shape, Vec<String>> = BTreeMap::new();
    for (path, shape) in &tables {
        by_shape.entry(*shape).or_default().push(dotted(path));
    }
    let mut problems = Vec::new();
    for ((name, keys), paths) in &by_shape {
        let rows: BTreeSet<&String> = paths
            .iter()
            .filter_map(|p| documented.get(p))
            .flatten()
            .collect();
        for key in *keys {
            let as_table = paths.iter().any(|p| {
                let child = if p.is_empty() {
                    (*key).to_owned()
                } else {
                    format!("{p}.{key}")
                };
                documented.contains_key(&child)
            });
            if !as_table && !rows.contains(&(*key).to_owned()) {
                problems.push(format!(
                    "`{key}` of [{}] (struct {name}) has no row under a heading `[{}]`",
                    paths[0], paths[0]
                ));
            }
        }
        for row in rows {
            if !keys.contains(&row.as_str()) {
                problems.push(format!(
                    "`{row}` is documented under [{}] but struct {name} has no such key",
                    paths[0]
                ));
            }
        }
    }
    for table in documented.keys() {
        let known = tables.keys().any(|p| &dotted(p) == table);
        let free_form = super::tests::FREE_FORM
            .iter()
            .any(|f| table.rsplit('.').next() == Some(*f));
        if !known && !free_form {
            problems.push(format!(
                "heading `[{table}]` names no table of the configuration"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/CONFIGURATION.md and the config structs disagree:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_section_parser_reads_headings_and_rows() {
    let doc = "## `[server]`: x\n\n| key | t |\n|---|---|\n| `a` | x |\n| `b`, `c` | y |\n\
               text `[no]` | `d` |\n### `[[routes.sign]]`\n| `e` | z |\n## Other\n| `f` | q |\n";
    let s = sections(doc);
    assert_eq!(
        s.get("server")
            .map(|k| k.iter().cloned().collect::<Vec<_>>()),
        Some(vec!["a".into(), "b".into(), "c".into()])
    );
    assert_eq!(s.get("routes.sign").map(BTreeSet::len), Some(1));
    assert_eq!(s.len(), 2, "{s:?}");
}
