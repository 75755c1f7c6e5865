//! Word-level language-modelling data: WikiText-2 / WikiText-103 loaded from the standard files,
//! or a small corpus revlib generates when they are absent.
//!
//! WikiText (Merity et al. 2016, CC BY-SA 3.0) is distributed by Salesforce Research and on
//! Hugging Face (`Salesforce/wikitext`). Put `wiki.{train,valid,test}.tokens` (or the same files
//! named `{train,valid,test}.txt`) in `<data dir>/wikitext-2/` (see
//! [`data_dir_for`]).

use super::data::{data_dir_for, data_required};
use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Unknown-word token (index 0).
pub const UNK: &str = "<unk>";
/// End-of-line token (index 1).
pub const EOS: &str = "<eos>";

/// A tokenised corpus with a capped vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct Corpus {
    /// Words by id: `<unk>`, `<eos>`, then the most frequent training words.
    pub vocab: Vec<String>,
    /// Token ids of the training split.
    pub train: Vec<u32>,
    /// Validation split.
    pub valid: Vec<u32>,
    /// Test split.
    pub test: Vec<u32>,
    /// Where it came from.
    pub source: String,
    /// Fraction of test tokens mapped to `<unk>` (including the corpus's own `<unk>`s).
    pub test_unk_fraction: f64,
    /// The files it was read from (train, valid, test; empty for a generated corpus).
    pub files: Vec<PathBuf>,
}

fn split_path(dir: &Path, split: &str) -> Option<PathBuf> {
    [format!("wiki.{split}.tokens"), format!("{split}.txt")].into_iter().map(|n| dir.join(n)).find(|p| p.exists())
}

/// Words of a file, one `<eos>` after every line (blank lines included, as the standard
/// word-level recipe does).
fn words(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    let mut out = Vec::new();
    for line in text.lines() {
        out.extend(line.split_whitespace().map(str::to_string));
        out.push(EOS.to_string());
    }
    Ok(out)
}

/// Build a capped vocabulary from training words and map the three splits. Ids are ordered
/// by training frequency (ties: first appearance).
///
/// # Errors
/// `max_vocab < 3`.
pub fn build_corpus(train: &[String], valid: &[String], test: &[String], max_vocab: usize, source: String) -> Result<Corpus> {
    if max_vocab < 3 {
        return Err(Error::InvalidArgument { name: "max_vocab", value: max_vocab as f64, expected: "at least 3 (<unk>, <eos> and one word)" });
    }
    let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
    for (i, w) in train.iter().enumerate() {
        counts.entry(w.as_str()).or_insert((0, i)).0 += 1;
    }
    let mut ranked: Vec<(&str, (usize, usize))> = counts.into_iter().filter(|(w, _)| *w != UNK && *w != EOS).collect();
    ranked.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)));
    let mut vocab = vec![UNK.to_string(), EOS.to_string()];
    vocab.extend(ranked.into_iter().take(max_vocab - 2).map(|(w, _)| w.to_string()));
    let index: HashMap<&str, u32> = vocab.iter().enumerate().map(|(i, w)| (w.as_str(), i as u32)).collect();
    let map = |ws: &[String]| ws.iter().map(|w| index.get(w.as_str()).copied().unwrap_or(0)).collect::<Vec<u32>>();
    let (train, valid, test) = (map(train), map(valid), map(test));
    let test_unk_fraction = test.iter().filter(|&&t| t == 0).count() as f64 / test.len().max(1) as f64;
    Ok(Corpus { vocab, train, valid, test, source, test_unk_fraction, files: Vec::new() })
}

/// Load WikiText from `dir` (`wiki.*.tokens` or `*.txt`), keeping the `max_vocab` most frequent
/// training words (everything else becomes `<unk>`).
///
/// # Errors
/// A missing split or an unreadable file.
pub fn load_wikitext(dir: &Path, max_vocab: usize) -> Result<Corpus> {
    let (mut splits, mut files) = (Vec::new(), Vec::new());
    for split in ["train", "valid", "test"] {
        let p = split_path(dir, split).ok_or_else(|| Error::Io { path: dir.to_path_buf(), source: std::io::Error::new(std::io::ErrorKind::NotFound, format!("no wiki.{split}.tokens or {split}.txt")) })?;
        let w = words(&p)?;
        if w.is_empty() {
            return Err(Error::Parse { path: p, line: 0, reason: format!("the {split} split has no words") });
        }
        splits.push(w);
        files.push(p);
    }
    let source = format!("WikiText from {} (word level, vocabulary capped at {max_vocab} with <unk>)", dir.display());
    Ok(Corpus { files, ..build_corpus(&splits[0], &splits[1], &splits[2], max_vocab, source)? })
}

/// A small synthetic corpus: sentences from a fixed random grammar (subject, verb, object,
/// optional clause), so that there is structure for a language model to learn.
///
/// # Errors
/// None in practice (the vocabulary cap is fixed); kept for a uniform signature.
pub fn generated_corpus(n_words: usize, seed: u64) -> Result<Corpus> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let nouns = ["cat", "dog", "bird", "river", "city", "king", "song", "ship", "tree", "storm", "child", "letter"];
    let verbs = ["sees", "follows", "builds", "finds", "remembers", "crosses", "sings", "writes"];
    let adjs = ["old", "small", "red", "quiet", "bright", "cold"];
    let preps = ["near", "under", "after", "with"];
    let sentence = |rng: &mut rand::rngs::StdRng| {
        let mut s = vec!["the".to_string()];
        if rng.gen_bool(0.4) {
            s.push(adjs[rng.gen_range(0..adjs.len())].into());
        }
        s.push(nouns[rng.gen_range(0..nouns.len())].into());
        s.push(verbs[rng.gen_range(0..verbs.len())].into());
        s.push("the".into());
        s.push(nouns[rng.gen_range(0..nouns.len())].into());
        if rng.gen_bool(0.3) {
            s.push(preps[rng.gen_range(0..preps.len())].into());
            s.push("the".into());
            s.push(nouns[rng.gen_range(0..nouns.len())].into());
        }
        s.push(".".into());
        if rng.gen_bool(0.2) {
            s.push(EOS.into());
        }
        s
    };
    let mut make = |n: usize| {
        let mut w = Vec::with_capacity(n + 16);
        while w.len() < n {
            w.extend(sentence(&mut rng));
        }
        w
    };
    let (train, valid, test) = (make(n_words), make(n_words / 10), make(n_words / 10));
    let source = format!("generated by revlib (WikiText files not found): {n_words} training words from a toy grammar");
    build_corpus(&train, &valid, &test, 64, source)
}

/// WikiText-2 from `<data dir>/wikitext-2` when present, else the generated corpus (an error
/// instead when `REVLIB_REQUIRE_DATA=1`).
///
/// # Errors
/// Unreadable files, or missing files when data are required.
pub fn wikitext2_or_generated(max_vocab: usize) -> Result<Corpus> {
    let dir = data_dir_for("wikitext-2").join("wikitext-2");
    if split_path(&dir, "train").is_some() || data_required() {
        load_wikitext(&dir, max_vocab)
    } else {
        generated_corpus(200_000, 0)
    }
}
