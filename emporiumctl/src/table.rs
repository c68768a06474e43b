//! A minimal aligned-column table for terminal output: a header row, columns padded to their
//! widest cell and separated by two spaces, numbers right-aligned. No trailing whitespace.

use std::io::{self, Write};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

#[derive(Debug)]
pub(crate) struct Table {
    headers: Vec<String>,
    alignments: Vec<Align>,
    /// Invariant: every row has one cell per header.
    rows: Vec<Vec<String>>,
}

/// Two columns, no header: `key  value` lines for a single record.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    fields: Vec<(String, String)>,
}

const SEPARATOR: &str = "  ";

// === impl Table ===

impl Table {
    /// A table with these `(header, alignment)` columns.
    pub(crate) fn new(columns: &[(String, Align)]) -> Table {
        Table {
            headers: columns.iter().map(|(header, _)| header.clone()).collect(),
            alignments: columns.iter().map(|(_, align)| *align).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are left empty and extra ones dropped, so the invariant holds.
    pub(crate) fn push(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells.into_iter().map(|cell| single_line(&cell)).collect();
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub(crate) fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let headers = &self.headers;
        let mut widths: Vec<usize> = headers.iter().map(|header| width(header)).collect();
        for row in &self.rows {
            for (column, cell) in row.iter().enumerate() {
                widths[column] = widths[column].max(width(cell));
            }
        }
        write_row(out, headers, &widths, &self.alignments)?;
        for row in &self.rows {
            write_row(out, row, &widths, &self.alignments)?;
        }
        Ok(())
    }
}

// === impl Fields ===

impl Fields {
    pub(crate) fn push(&mut self, key: &str, value: impl Into<String>) {
        self.fields
            .push((key.to_owned(), single_line(&value.into())));
    }

    pub(crate) fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let key_width = self
            .fields
            .iter()
            .map(|(key, _)| width(key))
            .max()
            .unwrap_or(0);
        for (key, value) in &self.fields {
            let line = format!("{key:<key_width$}{SEPARATOR}{value}");
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

// === helpers ===

fn write_row(
    out: &mut impl Write,
    cells: &[String],
    widths: &[usize],
    alignments: &[Align],
) -> io::Result<()> {
    let mut line = String::new();
    for (column, cell) in cells.iter().enumerate() {
        if column > 0 {
            line.push_str(SEPARATOR);
        }
        let padding = " ".repeat(widths[column].saturating_sub(width(cell)));
        match alignments[column] {
            Align::Left => {
                line.push_str(cell);
                line.push_str(&padding);
            }
            Align::Right => {
                line.push_str(&padding);
                line.push_str(cell);
            }
        }
    }
    writeln!(out, "{}", line.trim_end())
}

/// Display width, counted in characters: close enough for the names and ids the services hold.
fn width(text: &str) -> usize {
    text.chars().count()
}

/// A line break or tab inside a cell would break the columns: show them as spaces.
fn single_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell_and_numbers_align_right() {
        let mut table = Table::new(&[
            ("NAME".to_owned(), Align::Left),
            ("PRICE".to_owned(), Align::Right),
            ("NOTE".to_owned(), Align::Left),
        ]);
        table.push(vec![
            "Trail runner".into(),
            "12.99 EUR".into(),
            "new\nline".into(),
        ]);
        table.push(vec!["Sock".into(), "1.00 EUR".into(), String::new()]);
        let mut out = Vec::new();
        table.write(&mut out).expect("writing to a Vec cannot fail");
        assert_eq!(
            String::from_utf8(out).expect("the table is UTF-8"),
            "NAME              PRICE  NOTE\n\
             Trail runner  12.99 EUR  new line\n\
             Sock           1.00 EUR\n"
        );
    }
}
