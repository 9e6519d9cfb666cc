//! Where things are in a YAML file: an index from key paths (`flows.x.source`) to source
//! positions and back, built from the parser's event stream.
//!
//! The typed model carries no positions, so semantic checks name a path and ask the index
//! where it is; deserialization errors carry a position and ask which path is there.
//! The index records the text as written: aliases and merge keys are not expanded.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, Span};

/// A 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    /// The start of the file, for problems that have no better place.
    pub const START: Pos = Pos { line: 1, column: 1 };
}

/// Which part of a mapping entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Key,
    Value,
}

/// A key written twice in one mapping.
#[derive(Debug, Clone)]
pub(crate) struct DuplicateKey {
    /// Path of the repeated entry (the mapping's path plus the key).
    pub path: Vec<String>,
    pub first: Pos,
    pub again: Pos,
}

#[derive(Debug)]
struct Node {
    parent: Option<usize>,
    segment: String,
    key: Option<(Pos, usize)>,
    value: Option<(Pos, usize)>,
    is_container: bool,
}

/// The path index of one file.
#[derive(Debug)]
pub(crate) struct Locator {
    nodes: Vec<Node>,
    children: HashMap<(usize, String), usize>,
    /// (position, node, part), sorted by position.
    by_position: Vec<(Pos, usize, Part)>,
    duplicates: Vec<DuplicateKey>,
}

const ROOT: usize = 0;

enum Frame {
    Map {
        node: usize,
        key: Option<(String, Pos, usize)>,
        seen: HashMap<String, Pos>,
    },
    Seq {
        node: usize,
        next: usize,
    },
    /// Inside a complex (non-scalar) key, which is not indexed.
    ComplexKey {
        depth: usize,
        pos: Pos,
        len: usize,
    },
}

fn pos_of(span: &Span) -> (Pos, usize) {
    let pos = Pos {
        line: span.start.line().max(1),
        column: span.start.col() + 1,
    };
    (pos, span.end.index().saturating_sub(span.start.index()))
}

impl Locator {
    /// Index `text`, looking at no more than `max_nodes` nodes. A syntax error ends the index
    /// where it occurs (the deserializer reports the error itself); only the first document is
    /// indexed.
    pub fn build(text: &str, max_nodes: usize) -> Locator {
        let mut loc = Locator {
            nodes: vec![Node {
                parent: None,
                segment: String::new(),
                key: None,
                value: None,
                is_container: false,
            }],
            children: HashMap::new(),
            by_position: Vec::new(),
            duplicates: Vec::new(),
        };
        let options = serde_saphyr::granit_parser::options! { emit_comments: false };
        let parser = Parser::new_from_str_with_options(text, options);
        let mut stack: Vec<Frame> = Vec::new();
        let mut root_seen = false;
        let mut count = 0usize;
        for item in parser {
            let Ok((event, span)) = item else { break };
            let (pos, len) = pos_of(&span);
            let opens = matches!(event, Event::MappingStart(..) | Event::SequenceStart(..));
            match event {
                Event::StreamStart | Event::DocumentStart(..) => continue,
                Event::StreamEnd | Event::DocumentEnd => break,
                Event::MappingEnd | Event::SequenceEnd => {
                    match stack.last_mut() {
                        Some(Frame::ComplexKey { depth, pos, len }) => {
                            *depth -= 1;
                            if *depth == 0 {
                                let (pos, len) = (*pos, *len);
                                stack.pop();
                                if let Some(Frame::Map { key, .. }) = stack.last_mut() {
                                    *key = Some(("?".to_string(), pos, len));
                                }
                            }
                        }
                        Some(_) => {
                            stack.pop();
                        }
                        None => {}
                    }
                    continue;
                }
                _ => {}
            }
            count += 1;
            if count > max_nodes {
                break;
            }
            let scalar = match &event {
                Event::Scalar(value, ..) => Some(value.to_string()),
                Event::Alias(_) => Some("*".to_string()),
                _ => None,
            };
            let node = match stack.last_mut() {
                None if root_seen => break,
                None => {
                    root_seen = true;
                    loc.nodes[ROOT].value = Some((pos, len));
                    loc.nodes[ROOT].is_container = opens;
                    loc.by_position.push((pos, ROOT, Part::Value));
                    ROOT
                }
                Some(Frame::ComplexKey { depth, .. }) => {
                    if opens {
                        *depth += 1;
                    }
                    continue;
                }
                Some(Frame::Map { node, key, seen }) => match key.take() {
                    None => {
                        match scalar {
                            Some(name) => {
                                if name != "<<" && name != "*" {
                                    if let Some(first) = seen.get(&name) {
                                        let mut path = loc.path(*node);
                                        path.push(name.clone());
                                        loc.duplicates.push(DuplicateKey {
                                            path,
                                            first: *first,
                                            again: pos,
                                        });
                                    } else {
                                        seen.insert(name.clone(), pos);
                                    }
                                }
                                *key = Some((name, pos, len));
                            }
                            None => stack.push(Frame::ComplexKey { depth: 1, pos, len }),
                        }
                        continue;
                    }
                    Some((name, key_pos, key_len)) => {
                        let parent = *node;
                        let id = loc.add_child(parent, name, opens);
                        loc.nodes[id].key = Some((key_pos, key_len));
                        loc.nodes[id].value = Some((pos, len));
                        loc.by_position.push((key_pos, id, Part::Key));
                        loc.by_position.push((pos, id, Part::Value));
                        id
                    }
                },
                Some(Frame::Seq { node, next }) => {
                    let parent = *node;
                    let index = *next;
                    *next += 1;
                    let id = loc.add_child(parent, index.to_string(), opens);
                    loc.nodes[id].value = Some((pos, len));
                    loc.by_position.push((pos, id, Part::Value));
                    id
                }
            };
            match event {
                Event::MappingStart(..) => stack.push(Frame::Map {
                    node,
                    key: None,
                    seen: HashMap::new(),
                }),
                Event::SequenceStart(..) => stack.push(Frame::Seq { node, next: 0 }),
                _ => {}
            }
        }
        loc.by_position.sort_by_key(|(pos, ..)| *pos);
        loc
    }

    /// A new node under `parent`. A repeated key gets a node of its own (so positions inside
    /// it still resolve) but path lookups keep finding the first one.
    fn add_child(&mut self, parent: usize, segment: String, is_container: bool) -> usize {
        let id = self.nodes.len();
        self.nodes.push(Node {
            parent: Some(parent),
            segment: segment.clone(),
            key: None,
            value: None,
            is_container,
        });
        self.children.entry((parent, segment)).or_insert(id);
        id
    }

    /// The key path of a node.
    fn path(&self, mut node: usize) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(parent) = self.nodes[node].parent {
            out.push(self.nodes[node].segment.clone());
            node = parent;
        }
        out.reverse();
        out
    }

    /// Keys written twice in one mapping, in the order found.
    pub fn duplicates(&self) -> &[DuplicateKey] {
        &self.duplicates
    }

    /// Where `path` is written: the position of its key or value. When the path is not
    /// written out (a default, or something under an alias or merge), the position of its
    /// deepest written ancestor.
    pub fn find(&self, path: &[&str], part: Part) -> Pos {
        let mut node = ROOT;
        let mut complete = true;
        for segment in path {
            match self.children.get(&(node, (*segment).to_string())) {
                Some(&child) => node = child,
                None => {
                    complete = false;
                    break;
                }
            }
        }
        let n = &self.nodes[node];
        let wanted = if complete && part == Part::Key {
            n.key.or(n.value)
        } else {
            n.value
        };
        wanted.or(n.key).map_or(Pos::START, |(pos, _)| pos)
    }

    /// The keys written under `path`, in file order (repeated keys once).
    pub fn keys(&self, path: &[&str]) -> Vec<String> {
        let mut node = ROOT;
        for segment in path {
            match self.children.get(&(node, (*segment).to_string())) {
                Some(&child) => node = child,
                None => return Vec::new(),
            }
        }
        let mut out: Vec<(Pos, String)> = self
            .children
            .iter()
            .filter(|((parent, _), _)| *parent == node)
            .map(|((_, key), id)| {
                (
                    self.nodes[*id].key.map_or(Pos::START, |(p, _)| p),
                    key.clone(),
                )
            })
            .collect();
        out.sort();
        out.into_iter().map(|(_, key)| key).collect()
    }

    /// Whether `path` is written out in the file.
    #[cfg(test)]
    pub fn contains(&self, path: &[&str]) -> bool {
        let mut node = ROOT;
        for segment in path {
            match self.children.get(&(node, (*segment).to_string())) {
                Some(&child) => node = child,
                None => return false,
            }
        }
        true
    }

    /// The path of what is written at `pos`: the entry whose key or value starts there (`len`,
    /// the length of the reported span, picks among several), else the nearest entry before.
    pub fn path_at(&self, pos: Pos, len: Option<usize>) -> Vec<String> {
        let here = self.entries_at(pos);
        let exact = here
            .iter()
            .find(|(node, part)| Some(self.span_len(*node, *part)) == len);
        let chosen = exact
            .or_else(|| here.iter().find(|(_, part)| *part == Part::Value))
            .or_else(|| here.first())
            .map(|(node, _)| *node)
            .or_else(|| self.nearest_before(pos));
        chosen.map(|node| self.path(node)).unwrap_or_default()
    }

    /// For an "unknown field" at `pos`: the path of that key.
    pub fn unknown_key_at(&self, pos: Pos, name: &str) -> Option<Vec<String>> {
        self.entries_at(pos)
            .into_iter()
            .find(|(node, part)| *part == Part::Key && self.nodes[*node].segment == name)
            .map(|(node, _)| self.path(node))
    }

    /// For a "missing field" reported at `pos` (a mapping, or its first key): the mapping's
    /// path.
    pub fn mapping_at(&self, pos: Pos) -> Option<Vec<String>> {
        let here = self.entries_at(pos);
        if let Some((node, _)) = here
            .iter()
            .find(|(n, part)| *part == Part::Value && self.nodes[*n].is_container)
        {
            return Some(self.path(*node));
        }
        here.iter()
            .find(|(_, part)| *part == Part::Key)
            .and_then(|(node, _)| self.nodes[*node].parent)
            .map(|parent| self.path(parent))
    }

    fn entries_at(&self, pos: Pos) -> Vec<(usize, Part)> {
        let start = self.by_position.partition_point(|(p, ..)| *p < pos);
        self.by_position[start..]
            .iter()
            .take_while(|(p, ..)| *p == pos)
            .map(|(_, node, part)| (*node, *part))
            .collect()
    }

    fn nearest_before(&self, pos: Pos) -> Option<usize> {
        let end = self.by_position.partition_point(|(p, ..)| *p <= pos);
        end.checked_sub(1).map(|i| self.by_position[i].1)
    }

    fn span_len(&self, node: usize, part: Part) -> usize {
        let n = &self.nodes[node];
        let span = if part == Part::Key { n.key } else { n.value };
        span.map_or(usize::MAX, |(_, len)| len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
flows:
  a:
    source: { webhook: { system: s } }
    destinations:
      d:
        http:
          url: x
  a: {}
list:
  - one
  - two: 2
";

    #[test]
    fn finds_paths_and_positions() {
        let loc = Locator::build(TEXT, 1000);
        assert_eq!(
            loc.find(&["flows", "a"], Part::Key),
            Pos { line: 2, column: 3 }
        );
        assert_eq!(
            loc.find(
                &["flows", "a", "destinations", "d", "http", "url"],
                Part::Value
            ),
            Pos {
                line: 7,
                column: 16
            }
        );
        assert_eq!(
            loc.find(&["flows", "a", "source", "webhook", "system"], Part::Value),
            Pos {
                line: 3,
                column: 34
            }
        );
        // Not written: falls back to the deepest written ancestor.
        assert_eq!(
            loc.find(
                &["flows", "a", "destinations", "d", "retry", "max_age"],
                Part::Value
            ),
            loc.find(&["flows", "a", "destinations", "d"], Part::Value)
        );
        assert_eq!(
            loc.path_at(
                Pos {
                    line: 11,
                    column: 5
                },
                Some(3)
            ),
            ["list", "1", "two"]
        );
        assert_eq!(loc.duplicates().len(), 1);
        assert_eq!(loc.duplicates()[0].path, ["flows", "a"]);
        assert_eq!(loc.duplicates()[0].again, Pos { line: 8, column: 3 });
    }

    #[test]
    fn survives_syntax_errors_and_limits() {
        let loc = Locator::build("a: [1, 2\nb: {", 1000);
        assert!(loc.contains(&["a"]));
        let loc = Locator::build("a: 1\nb: 2\nc: 3\n", 4);
        assert!(loc.contains(&["a"]));
        assert!(!loc.contains(&["c"]));
    }
}
