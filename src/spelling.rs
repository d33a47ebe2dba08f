//! How far apart two words are, for the "did you mean" hints of the command
//! line (misspelled commands and flags) and of the config (unknown keys).

/// Optimal string alignment distance: insertions, deletions, substitutions and
/// swaps of two adjacent characters each cost 1.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: the one before the previous, the previous, the current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::distance;

    #[test]
    fn edits_and_swaps_of_neighbours_cost_one_each() {
        for (a, b, d) in [
            ("status", "status", 0),
            ("stauts", "status", 1),
            ("", "abc", 3),
            ("abc", "", 3),
            ("kitten", "sitting", 3),
            ("ab", "ba", 1),
            ("ca", "abc", 3),
            ("dpeends_on", "depends_on", 1),
            ("ŝtatus", "status", 1),
        ] {
            assert_eq!(distance(a, b), d, "{a} -> {b}");
            assert_eq!(distance(b, a), d, "{b} -> {a}");
        }
    }
}
