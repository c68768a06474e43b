//! Request parameters as OAuth2 reads them (RFC 6749 §3.1): form-urlencoded, a parameter sent
//! without a value is treated as omitted, and one sent twice makes the request invalid.

/// Decoded name/value pairs from a query string or a form body.
#[derive(Clone, Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

/// A parameter that appeared more than once.
#[derive(Debug)]
pub(crate) struct Repeated(pub(crate) String);

impl Params {
    pub(crate) fn parse(input: &[u8]) -> Params {
        Params(
            form_urlencoded::parse(input)
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect(),
        )
    }

    /// The value of `name`, `None` when absent or empty.
    pub(crate) fn get(&self, name: &str) -> Result<Option<&str>, Repeated> {
        let mut values = self
            .0
            .iter()
            .filter(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| value.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(Repeated(name.to_owned()));
        }
        Ok(first)
    }
}

/// `application/x-www-form-urlencoded` encoding of `pairs`, for redirects and hidden fields.
pub(crate) fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

/// `uri` with `query` appended, keeping any query the registered URI already has.
pub(crate) fn with_query(uri: &str, query: &str) -> String {
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_count_as_absent() {
        let params = Params::parse(b"state=&scope=openid");
        assert_eq!(params.get("state").unwrap(), None);
        assert_eq!(params.get("scope").unwrap(), Some("openid"));
    }

    #[test]
    fn a_repeated_parameter_is_refused() {
        let params = Params::parse(b"code=a&code=b");
        assert!(params.get("code").is_err());
    }

    #[test]
    fn a_query_is_appended_after_an_existing_one() {
        assert_eq!(
            with_query("https://a.test/cb", "code=1"),
            "https://a.test/cb?code=1"
        );
        assert_eq!(
            with_query("https://a.test/cb?x=y", "code=1"),
            "https://a.test/cb?x=y&code=1"
        );
    }
}
