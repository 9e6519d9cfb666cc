//! Deserializing one YAML file into its sections, reporting more than the first error.
//!
//! serde-saphyr deserializes straight from the event stream, so an error inside a value
//! leaves the stream mid-node and the whole call fails. To report one error per broken
//! entry, the file is deserialized in passes over the same text. Every top-level key and
//! every entry of `systems:` and `flows:` is a *unit*, numbered in document order (the
//! numbering is the same in every pass). A pass deserializes only the units after the last
//! one that failed and skips the others as [`IgnoredAny`] (anchors defined in them still
//! work): the first error of a pass belongs to the unit being read, every unit before it is
//! finished, and the next pass starts after it. So a file costs one pass per error, plus one.
//! Errors the parser cannot get past (syntax, budget breaches) end the file's passes.

use crate::steps::SchemaDef;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_saphyr::{Error, Spanned};

use crate::locate::Pos;
use crate::model::{Flow, Settings, System};
use crate::tenants::Tenant;

/// At most this many deserialization errors are reported per file.
pub(crate) const MAX_ERRORS_PER_FILE: usize = 50;

/// Largest number of YAML nodes (scalars, sequences, mappings) in one file.
pub(crate) const MAX_NODES: usize = 200_000;

const TOP_LEVEL_KEYS: &[&str] = &["settings", "systems", "flows", "schemas", "tenants"];

/// The deserializer options: resource budgets that refuse YAML bombs and absurd nesting,
/// duplicate keys passed through (the locator reports them, located), no snippets (the
/// renderer makes its own).
pub(crate) fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: 48,
            max_nodes: MAX_NODES,
            max_events: 4 * MAX_NODES,
            max_aliases: 10_000,
            max_anchors: 10_000,
            max_documents: 2,
            max_merge_keys: 1_000,
            max_total_scalar_bytes: 8 * 1024 * 1024,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 100_000,
            max_replay_stack_depth: 16,
        },
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        with_snippet: false,
    }
}

/// One deserialization error, with the position of the entry it happened in (for errors
/// that carry no position of their own).
#[derive(Debug)]
pub(crate) struct ParseError {
    pub error: Error,
    pub entry: Option<Pos>,
}

/// What one file declared, as far as it could be read.
#[derive(Debug, Default)]
pub(crate) struct ParsedFile {
    /// `settings:` when present and not null.
    pub settings: Option<Settings>,
    /// Whether the file has a `settings:` key at all (even a broken one).
    pub has_settings: bool,
    /// Entries that deserialized, in file order (a name may repeat; the locator reports it).
    pub systems: Vec<(String, System)>,
    pub flows: Vec<(String, Flow)>,
    pub schemas: Vec<(String, SchemaDef)>,
    pub tenants: Vec<(String, Tenant)>,
    pub errors: Vec<ParseError>,
    /// Whether error reporting stopped early at [`MAX_ERRORS_PER_FILE`].
    pub truncated: bool,
}

/// Deserialize `text`, collecting every entry that deserializes and an error for each that
/// does not.
pub(crate) fn parse_file(text: &str) -> ParsedFile {
    let state = State::default();
    loop {
        state.counter.set(0);
        state.current.set(0);
        state.entry_pos.set(None);
        let result = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
            FileSeed { state: &state }.deserialize(de)
        });
        let Err(error) = result else { break };
        let unit = state.current.get();
        let progressed = state.done_through.get().is_none_or(|done| unit > done);
        let fatal = is_fatal(&error);
        let mut out = state.out.borrow_mut();
        // No progress means the unit failed again: a repeat, unless it is a fatal error the
        // first one hid (a bomb under an unknown key fails on the key first).
        if progressed || fatal || out.errors.is_empty() {
            out.errors.push(ParseError {
                error,
                entry: state.entry_pos.get(),
            });
        }
        if fatal || !progressed {
            break;
        }
        if out.errors.len() >= MAX_ERRORS_PER_FILE {
            out.truncated = true;
            break;
        }
        state.done_through.set(Some(unit));
        state.failed.borrow_mut().insert(unit);
    }
    state.out.into_inner()
}

/// Errors that leave nothing to read after them.
fn is_fatal(error: &Error) -> bool {
    match error.without_snippet() {
        Error::AliasError { error, .. } => is_fatal(error),
        Error::Budget { .. }
        | Error::AliasReplayCounterOverflow { .. }
        | Error::AliasReplayLimitExceeded { .. }
        | Error::AliasExpansionLimitExceeded { .. }
        | Error::AliasReplayStackDepthExceeded { .. }
        | Error::ExternalMessage { .. }
        | Error::Eof { .. }
        | Error::MultipleDocuments { .. }
        | Error::InvalidUtf8Input
        | Error::IOError { .. } => true,
        _ => false,
    }
}

#[derive(Default)]
struct State {
    /// Units up to this one are finished (deserialized, or failed and reported).
    done_through: Cell<Option<usize>>,
    /// Units that failed: skipped whole in later passes.
    failed: RefCell<HashSet<usize>>,
    /// Numbering of the units of this pass.
    counter: Cell<usize>,
    /// The unit being read.
    current: Cell<usize>,
    /// Where the unit being read starts (its key).
    entry_pos: Cell<Option<Pos>>,
    out: RefCell<ParsedFile>,
}

impl State {
    fn begin_unit(&self) -> usize {
        let id = self.counter.get() + 1;
        self.counter.set(id);
        self.current.set(id);
        self.entry_pos.set(None);
        id
    }

    fn is_done(&self, unit: usize) -> bool {
        self.done_through.get().is_some_and(|done| unit <= done)
    }

    fn has_failed(&self, unit: usize) -> bool {
        self.failed.borrow().contains(&unit)
    }

    fn note_key(&self, key: &Spanned<String>) {
        let at = key.referenced;
        if at.line() > 0 {
            self.entry_pos.set(Some(Pos {
                line: usize::try_from(at.line()).unwrap_or(usize::MAX),
                column: usize::try_from(at.column()).unwrap_or(usize::MAX),
            }));
        }
    }
}

/// The whole file: a mapping of sections.
struct FileSeed<'s> {
    state: &'s State,
}

impl<'de> DeserializeSeed<'de> for FileSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for FileSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping with `settings`, `systems`, `flows`, `schemas` and/or `tenants`")
    }

    /// An empty file, one with only comments, or an empty document (`---`).
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.state;
        loop {
            let unit = state.begin_unit();
            let Some(key) = map.next_key::<Spanned<String>>()? else {
                break;
            };
            state.note_key(&key);
            let section = matches!(
                key.value.as_str(),
                "systems" | "flows" | "schemas" | "tenants"
            );
            if key.value == "settings" {
                state.out.borrow_mut().has_settings = true;
            }
            if state.has_failed(unit) || (!section && state.is_done(unit)) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            match key.value.as_str() {
                "settings" => {
                    let settings: Option<Settings> = map.next_value()?;
                    state.out.borrow_mut().settings = settings;
                }
                "systems" => map.next_value_seed(SectionSeed::new(
                    state,
                    |out: &mut ParsedFile, name, v: System| out.systems.push((name, v)),
                ))?,
                "flows" => map.next_value_seed(SectionSeed::new(
                    state,
                    |out: &mut ParsedFile, name, v: Flow| out.flows.push((name, v)),
                ))?,
                "schemas" => map.next_value_seed(SectionSeed::new(
                    state,
                    |out: &mut ParsedFile, name, v: SchemaDef| out.schemas.push((name, v)),
                ))?,
                "tenants" => map.next_value_seed(SectionSeed::new(
                    state,
                    |out: &mut ParsedFile, name, v: Tenant| out.tenants.push((name, v)),
                ))?,
                other => return Err(de::Error::unknown_field(other, TOP_LEVEL_KEYS)),
            }
        }
        Ok(())
    }
}

/// A section (`systems:` or `flows:`): a mapping of named entries, each its own unit. A
/// null section (every entry commented out) is empty.
struct SectionSeed<'s, T, F> {
    state: &'s State,
    store: F,
    entry: PhantomData<T>,
}

impl<'s, T, F> SectionSeed<'s, T, F> {
    fn new(state: &'s State, store: F) -> Self {
        Self {
            state,
            store,
            entry: PhantomData,
        }
    }
}

impl<'de, T, F> DeserializeSeed<'de> for SectionSeed<'_, T, F>
where
    T: Deserialize<'de>,
    F: Fn(&mut ParsedFile, String, T),
{
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, T, F> Visitor<'de> for SectionSeed<'_, T, F>
where
    T: Deserialize<'de>,
    F: Fn(&mut ParsedFile, String, T),
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping of names to definitions")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.state;
        loop {
            let unit = state.begin_unit();
            let Some(name) = map.next_key::<Spanned<String>>()? else {
                break;
            };
            state.note_key(&name);
            if state.is_done(unit) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value: T = map.next_value()?;
            (self.store)(&mut state.out.borrow_mut(), name.value, value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_error_per_broken_entry() {
        let text = "\
systems:
  a: { owner: x, bogus: 1 }
  b: { owner: y }
  c: { tier: mega }
flows:
  f: { nope: 1 }
";
        let parsed = parse_file(text);
        assert_eq!(parsed.systems.len(), 1);
        assert_eq!(parsed.systems[0].0, "b");
        let lines: Vec<u64> = parsed
            .errors
            .iter()
            .map(|e| e.error.location().map_or(0, |l| l.line()))
            .collect();
        assert_eq!(lines, [2, 4, 6]);
    }

    #[test]
    fn anchors_in_skipped_entries_still_resolve() {
        let text = "\
systems:
  a: &base { owner: x, bogus: 1 }
  b: *base
";
        let parsed = parse_file(text);
        // `a` fails on `bogus`, and `b` (the same mapping by alias) fails in the next pass.
        assert_eq!(parsed.errors.len(), 2);
        assert!(parsed.systems.is_empty());
    }

    #[test]
    fn syntax_error_stops_the_file() {
        let parsed = parse_file("systems:\n  a: {owner: x}\n  b: {owner: \"x}\n  c: {}\n");
        assert_eq!(parsed.errors.len(), 1, "{:?}", parsed.errors);
        assert!(is_fatal(&parsed.errors[0].error));
        assert_eq!(parsed.systems.len(), 1);
    }

    #[test]
    fn a_fatal_error_hidden_behind_another_is_still_reported() {
        // `b` is the wrong type, and the file ends inside it.
        let parsed = parse_file("systems:\n  a: {owner: x}\n  b: [\n");
        assert_eq!(parsed.errors.len(), 2, "{:?}", parsed.errors);
        assert!(!is_fatal(&parsed.errors[0].error));
        assert!(is_fatal(&parsed.errors[1].error));
    }

    #[test]
    fn empty_and_null_sections() {
        for text in ["", "# nothing\n", "---\n", "systems:\nflows: ~\n"] {
            let parsed = parse_file(text);
            assert!(parsed.errors.is_empty(), "{text:?}: {:?}", parsed.errors);
        }
    }
}
