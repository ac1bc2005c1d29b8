//! Plain tables: columns separated by at least two spaces, no borders, as
//! the original's tab-aligned output.

/// Renders rows (the header first, if any) with every column but the last
/// padded to its widest cell plus two spaces; trailing spaces are trimmed.
pub fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (n, cell) in row.iter().enumerate() {
            widths[n] = widths[n].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (n, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if n + 1 < row.len() {
                let pad = widths[n] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up_with_two_spaces_between() {
        let rows = vec![
            vec!["A".to_string(), "BB".to_string(), "C".to_string()],
            vec!["aaaa".to_string(), String::new(), String::new()],
        ];
        assert_eq!(super::render(&rows), "A     BB  C\naaaa\n");
    }
}
