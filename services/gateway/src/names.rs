//! GraphQL names derived from the contract's: OpenCRUD's field and type names per resource, and
//! orderBy values from a List request's order enum.

/// `Product` for `product`: the GraphQL type of a resource is its message's name.
pub(crate) fn create_field(type_name: &str) -> String {
    format!("create{type_name}")
}

pub(crate) fn update_field(type_name: &str) -> String {
    format!("update{type_name}")
}

pub(crate) fn delete_field(type_name: &str) -> String {
    format!("delete{type_name}")
}

/// `productsConnection` for `products`.
pub(crate) fn connection_field(plural: &str) -> String {
    format!("{plural}Connection")
}

/// `productChanged` for `product`.
pub(crate) fn changed_field(singular: &str) -> String {
    format!("{singular}Changed")
}

/// `lowerCamelCase` of an `UpperCamelCase` method name: `GrantRole` → `grantRole`.
pub(crate) fn lower_camel(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The `lowerCamelCase` field name an order value sorts by: `PRODUCT_ORDER_BY_STOCK_ON_HAND`
/// with its enum's value prefix `PRODUCT_ORDER_BY_` → `stockOnHand`. `None` for the unspecified
/// value (the default order) and for values that do not carry the prefix.
pub(crate) fn order_field(prefix: &str, value_name: &str) -> Option<String> {
    let rest = value_name.strip_prefix(prefix)?;
    if rest == "UNSPECIFIED" {
        return None;
    }
    let mut field = String::new();
    for (index, word) in rest.split('_').enumerate() {
        let word = word.to_lowercase();
        if index == 0 {
            field.push_str(&word);
        } else {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                field.extend(first.to_uppercase());
                field.push_str(chars.as_str());
            }
        }
    }
    Some(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_values_name_the_field_they_sort_by() {
        assert_eq!(
            order_field("PRODUCT_ORDER_BY_", "PRODUCT_ORDER_BY_NAME").as_deref(),
            Some("name")
        );
        assert_eq!(
            order_field("PRODUCT_ORDER_BY_", "PRODUCT_ORDER_BY_STOCK_ON_HAND").as_deref(),
            Some("stockOnHand")
        );
        assert_eq!(
            order_field("PRODUCT_ORDER_BY_", "PRODUCT_ORDER_BY_UNSPECIFIED"),
            None
        );
        assert_eq!(order_field("PRODUCT_ORDER_BY_", "SOMETHING_ELSE"), None);
    }

    #[test]
    fn method_names_become_field_names() {
        assert_eq!(lower_camel("GrantRole"), "grantRole");
        assert_eq!(create_field("Product"), "createProduct");
    }
}
