//! The per-coordinate statistics, one typed list. Each `Stat` carries its output name (the
//! `<tensor>/<stat>` key of `coords.safetensors`, the column of the per-coordinate table), its
//! unit and a one-line meaning (report labels). Adding a statistic means adding a variant here and its value in
//! `finish_coord`; every list of names is derived from [`Stat::ALL`].

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stat {
    N,
    Nonfinite,
    Mean,
    Var,
    Skew,
    Kurt,
    Jb,
    JbP,
    K2,
    K2P,
    AlphaLogm,
    ScaleLogm,
    AlphaBlock,
}

impl Stat {
    /// Every per-coordinate statistic, in output order.
    pub const ALL: [Stat; 13] = [
        Stat::N,
        Stat::Nonfinite,
        Stat::Mean,
        Stat::Var,
        Stat::Skew,
        Stat::Kurt,
        Stat::Jb,
        Stat::JbP,
        Stat::K2,
        Stat::K2P,
        Stat::AlphaLogm,
        Stat::ScaleLogm,
        Stat::AlphaBlock,
    ];

    /// The output name.
    pub const fn name(self) -> &'static str {
        match self {
            Stat::N => "n",
            Stat::Nonfinite => "nonfinite",
            Stat::Mean => "mean",
            Stat::Var => "var",
            Stat::Skew => "skew",
            Stat::Kurt => "kurt",
            Stat::Jb => "jb",
            Stat::JbP => "jb_p",
            Stat::K2 => "k2",
            Stat::K2P => "k2_p",
            Stat::AlphaLogm => "alpha_logm",
            Stat::ScaleLogm => "scale_logm",
            Stat::AlphaBlock => "alpha_block",
        }
    }

    pub const fn unit(self) -> &'static str {
        match self {
            Stat::N | Stat::Nonfinite => "samples",
            Stat::Mean | Stat::ScaleLogm => "data units",
            Stat::Var => "data units²",
            Stat::JbP | Stat::K2P => "p-value",
            Stat::AlphaLogm | Stat::AlphaBlock => "tail index α",
            Stat::Skew | Stat::Kurt | Stat::Jb | Stat::K2 => "",
        }
    }

    /// One line on what it is.
    pub const fn meaning(self) -> &'static str {
        match self {
            Stat::N => "finite samples used",
            Stat::Nonfinite => "NaN or ±∞ samples dropped",
            Stat::Mean => "sample mean",
            Stat::Var => "variance (ddof 0)",
            Stat::Skew => "skewness g1 (biased, as scipy.stats.skew)",
            Stat::Kurt => "excess kurtosis g2 (as scipy.stats.kurtosis)",
            Stat::Jb => "Jarque–Bera statistic",
            Stat::JbP => "Jarque–Bera p-value",
            Stat::K2 => "D'Agostino–Pearson K² (scipy.stats.normaltest)",
            Stat::K2P => "D'Agostino–Pearson p-value",
            Stat::AlphaLogm => "log-moment tail index (Ma & Nikias 1995)",
            Stat::ScaleLogm => "log-moment SαS scale",
            Stat::AlphaBlock => "block-sum tail index (Mohammadi et al. 2015)",
        }
    }

    pub fn from_name(name: &str) -> Option<Stat> {
        Stat::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Position in [`Stat::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The names of [`Stat::ALL`], in order.
pub const COORD_STATS: [&str; Stat::ALL.len()] = {
    let mut names = [""; Stat::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = Stat::ALL[i].name();
        i += 1;
    }
    names
};

/// Something that names a statistic: a [`Stat`], or its output name.
pub trait StatKey {
    fn stat(&self) -> Stat;
}

impl StatKey for Stat {
    fn stat(&self) -> Stat {
        *self
    }
}

impl StatKey for &str {
    fn stat(&self) -> Stat {
        Stat::from_name(self).unwrap_or_else(|| panic!("unknown statistic {self}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_names_and_indices_agree() {
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
            assert_eq!(Stat::from_name(s.name()), Some(*s));
            assert_eq!(COORD_STATS[i], s.name());
            assert!(!s.meaning().is_empty());
        }
    }
}
