//! The alias limit: a request may name at most so many aliased fields. Depth and complexity
//! bound what one selection costs; aliases are how one request repeats an expensive field
//! (`a: product(…) b: product(…) …`) or tries many guesses at once, so they are counted on their
//! own, right after parsing, before validation or any call. A fragment counts at every spread,
//! as it is executed; each fragment is counted once (so the count is linear in the document),
//! and a fragment that spreads itself counts nothing here (validation refuses it next).

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, ServerError, ServerResult, Variables};

/// Refuses a request with more than this many aliased fields.
pub(crate) struct AliasLimit(pub(crate) usize);

impl ExtensionFactory for AliasLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(AliasLimitExtension(self.0))
    }
}

struct AliasLimitExtension(usize);

#[async_graphql::async_trait::async_trait]
impl Extension for AliasLimitExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let n_aliases = count(&document);
        if n_aliases > self.0 {
            let mut error = ServerError::new(
                format!(
                    "the request has {n_aliases} aliased fields; at most {} are allowed",
                    self.0
                ),
                None,
            );
            error.extensions = Some({
                let mut extensions = async_graphql::ErrorExtensionValues::default();
                extensions.set("code", "BAD_USER_INPUT");
                extensions
            });
            return Err(error);
        }
        Ok(document)
    }
}

/// The aliased fields of every operation of `document`, fragments counted at each spread.
fn count(document: &ExecutableDocument) -> usize {
    let mut counter = Counter {
        fragments: &document.fragments,
        counted: HashMap::new(),
    };
    document
        .operations
        .iter()
        .map(|(_, operation)| counter.selection_set(&operation.node.selection_set.node))
        .fold(0, usize::saturating_add)
}

struct Counter<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    /// Each fragment's count once known; `None` while it is being counted (a cycle).
    counted: HashMap<&'a str, Option<usize>>,
}

impl<'a> Counter<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet) -> usize {
        set.items
            .iter()
            .map(|selection| match &selection.node {
                Selection::Field(field) => usize::from(field.node.alias.is_some())
                    .saturating_add(self.selection_set(&field.node.selection_set.node)),
                Selection::InlineFragment(fragment) => {
                    self.selection_set(&fragment.node.selection_set.node)
                }
                Selection::FragmentSpread(spread) => self.fragment(&spread.node.fragment_name.node),
            })
            .fold(0, usize::saturating_add)
    }

    fn fragment(&mut self, name: &'a Name) -> usize {
        if let Some(known) = self.counted.get(name.as_str()) {
            return known.unwrap_or(0);
        }
        let Some(definition) = self.fragments.get(name) else {
            return 0;
        };
        self.counted.insert(name.as_str(), None);
        let n_aliases = self.selection_set(&definition.node.selection_set.node);
        self.counted.insert(name.as_str(), Some(n_aliases));
        n_aliases
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    fn aliases(query: &str) -> usize {
        count(&async_graphql::parser::parse_query(query).expect("the query parses"))
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
