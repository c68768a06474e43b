//! The depth and alias limits, checked right after parsing, before validation or any call.
//!
//! - Depth: how deeply fields nest, fragments expanded where they are spread. Introspection
//!   (`__schema`, `__type`) is not counted: it reads the schema, calls no service, and the
//!   standard introspection query every client sends (graphql-js's `getIntrospectionQuery`)
//!   nests its type references a dozen levels deep. (async-graphql's own depth limit counts it,
//!   so it is not used.)
//! - Aliases: a request may name at most so many aliased fields. Depth and complexity bound what
//!   one selection costs; aliases are how one request repeats an expensive field
//!   (`a: product(…) b: product(…) …`) or tries many guesses at once.
//!
//! A fragment counts at every spread, as it is executed; each fragment is measured once (so the
//! work is linear in the document), and a fragment that spreads itself counts nothing here
//! (validation refuses it next).

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, ServerError, ServerResult, Variables};

/// Refuses a request nested deeper than `max_depth` or with more than `max_aliases` aliased
/// fields.
#[derive(Clone, Copy)]
pub(crate) struct QueryLimits {
    pub(crate) max_depth: usize,
    pub(crate) max_aliases: usize,
}

impl ExtensionFactory for QueryLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for QueryLimits {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let measure = measure(&document);
        if measure.depth > self.max_depth {
            return Err(refusal("Query is nested too deep.".to_owned()));
        }
        if measure.aliases > self.max_aliases {
            return Err(refusal(format!(
                "the request has {} aliased fields; at most {} are allowed",
                measure.aliases, self.max_aliases
            )));
        }
        Ok(document)
    }
}

fn refusal(message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", "BAD_USER_INPUT");
    error.extensions = Some(extensions);
    error
}

/// How deep a selection nests and how many aliases it names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Measure {
    depth: usize,
    aliases: usize,
}

impl Measure {
    /// Two selections side by side.
    fn beside(self, other: Measure) -> Measure {
        Measure {
            depth: self.depth.max(other.depth),
            aliases: self.aliases.saturating_add(other.aliases),
        }
    }
}

/// The deepest nesting and the aliases of every operation of `document`, fragments counted at
/// each spread.
fn measure(document: &ExecutableDocument) -> Measure {
    let mut measurer = Measurer {
        fragments: &document.fragments,
        measured: HashMap::new(),
    };
    document
        .operations
        .iter()
        .map(|(_, operation)| measurer.selection_set(&operation.node.selection_set.node))
        .fold(Measure::default(), Measure::beside)
}

struct Measurer<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    /// Each fragment's measure once known; `None` while it is being measured (a cycle).
    measured: HashMap<&'a str, Option<Measure>>,
}

impl<'a> Measurer<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet) -> Measure {
        set.items
            .iter()
            .map(|selection| match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let alias = usize::from(field.alias.is_some());
                    if matches!(field.name.node.as_str(), "__schema" | "__type") {
                        return Measure {
                            depth: 1,
                            aliases: alias,
                        };
                    }
                    let below = self.selection_set(&field.selection_set.node);
                    Measure {
                        depth: below.depth.saturating_add(1),
                        aliases: below.aliases.saturating_add(alias),
                    }
                }
                Selection::InlineFragment(fragment) => {
                    self.selection_set(&fragment.node.selection_set.node)
                }
                Selection::FragmentSpread(spread) => self.fragment(&spread.node.fragment_name.node),
            })
            .fold(Measure::default(), Measure::beside)
    }

    fn fragment(&mut self, name: &'a Name) -> Measure {
        if let Some(known) = self.measured.get(name.as_str()) {
            return known.unwrap_or_default();
        }
        let Some(definition) = self.fragments.get(name) else {
            return Measure::default();
        };
        self.measured.insert(name.as_str(), None);
        let measure = self.selection_set(&definition.node.selection_set.node);
        self.measured.insert(name.as_str(), Some(measure));
        measure
    }
}

#[cfg(test)]
mod tests {
    use super::measure;

    fn aliases(query: &str) -> usize {
        measure(&async_graphql::parser::parse_query(query).expect("the query parses")).aliases
    }

    fn depth(query: &str) -> usize {
        measure(&async_graphql::parser::parse_query(query).expect("the query parses")).depth
    }

    #[test]
    fn depth_counts_nested_fields_through_fragments_but_not_introspection() {
        assert_eq!(depth("{ products { category { events { type } } } }"), 4);
        assert_eq!(
            depth("{ products { ...f } } fragment f on Product { category { name } }"),
            3
        );
        assert_eq!(depth("{ products { ... on Product { name } } }"), 2);
        assert_eq!(
            depth(
                "{ __schema { types { fields { type { ofType { ofType { ofType { ofType \
                 { ofType { ofType { name } } } } } } } } } } }"
            ),
            1
        );
        assert_eq!(depth("{ __typename }"), 1);
    }

    #[test]
    fn aliases_are_counted_in_fields_fragments_and_every_spread() {
        assert_eq!(
            aliases("{ a: product(where: {id: \"1\"}) { id } b: products { id } }"),
            2
        );
        assert_eq!(
            aliases("{ products { n: name c: category { x: name } } }"),
            3
        );
        assert_eq!(
            aliases(
                "{ one: products { ...f } two: products { ...f } } \
                 fragment f on Product { p: name q: sku ... on Product { r: id } }"
            ),
            2 + 2 * 3
        );
        assert_eq!(aliases("{ products { name } }"), 0);
    }

    #[test]
    fn a_fragment_spreading_itself_is_left_to_validation() {
        assert_eq!(
            aliases("{ products { ...f } } fragment f on Product { a: name ...f }"),
            1
        );
    }

    #[test]
    fn nested_spreads_are_counted_without_walking_them_again() {
        // Each level doubles the spreads: counted by multiplying, not by walking 2^20 paths.
        let mut query = String::from("{ products { ...f0 } } fragment f0 on Product { x: name }");
        for level in 1..=20 {
            let below = level - 1;
            query.push_str(&format!(
                " fragment f{level} on Product {{ ...f{below} ...f{below} }}"
            ));
        }
        query = query.replace("{ products { ...f0 } }", "{ products { ...f20 } }");
        assert_eq!(aliases(&query), 1 << 20);
    }
}
