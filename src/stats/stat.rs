//! The per-coordinate statistics, one typed list. Each `Stat` carries its output name (the
//! `<tensor>/<stat>` key of `coords.safetensors`, the column of the per-coordinate table), its
//! unit and a one-line meaning (report labels). Adding a statistic means adding a variant here
//! and its value in `finish_coord` (or, for a distribution fit, a field of
//! [`crate::stats::fits::Fits`]); every list of names is derived from [`Stat::ALL`].
//!
//! [`Stat::CORE`] are the streamed statistics every run writes; [`Stat::FITS`] need all K
//! samples of a coordinate at once and are left out with `--no-fits`; [`Stat::POWERLAW`], the
//! iteration-wise power-law fits, also need whole columns and are left out unless asked for.
//! A table holds one of the four lists of [`Stat::maps`].

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
    AlphaMcculloch,
    BetaMcculloch,
    ScaleMcculloch,
    LocMcculloch,
    Ad,
    AdP,
    KsGauss,
    KsStable,
    Top1Share,
    VarRatio,
    AlphaPl,
    XminPl,
    KsPl,
}

impl Stat {
    /// Every per-coordinate statistic, in output order: [`Stat::CORE`], then [`Stat::FITS`].
    pub const ALL: [Stat; 26] = [
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
        Stat::AlphaMcculloch,
        Stat::BetaMcculloch,
        Stat::ScaleMcculloch,
        Stat::LocMcculloch,
        Stat::Ad,
        Stat::AdP,
        Stat::KsGauss,
        Stat::KsStable,
        Stat::Top1Share,
        Stat::VarRatio,
        Stat::AlphaPl,
        Stat::XminPl,
        Stat::KsPl,
    ];

    /// The streamed statistics (two passes over the data), written by every run.
    pub const CORE: [Stat; 13] = head(Stat::ALL);

    /// The distribution fits over each coordinate's K samples, in the field order of
    /// [`crate::stats::fits::Fits`]; `--no-fits` leaves them out.
    pub const FITS: [Stat; 10] = [
        Stat::AlphaMcculloch,
        Stat::BetaMcculloch,
        Stat::ScaleMcculloch,
        Stat::LocMcculloch,
        Stat::Ad,
        Stat::AdP,
        Stat::KsGauss,
        Stat::KsStable,
        Stat::Top1Share,
        Stat::VarRatio,
    ];

    /// The power-law fit (Clauset, Shalizi & Newman 2009, as the `powerlaw` package) of each
    /// coordinate's K magnitudes |u|, in the field order of
    /// [`crate::analyze::structure::PowerLawCoord`].
    pub const POWERLAW: [Stat; 3] = tail(Stat::ALL);

    /// The maps the pooled summary and the report read (the quantiles of α, the
    /// histograms, the KS plot), kept in memory when the others go to a file as they are
    /// finished ([`crate::stats::MapsOut::Streamed`]).
    pub const SHOWN: [Stat; 6] = [
        Stat::Kurt,
        Stat::AlphaLogm,
        Stat::AlphaBlock,
        Stat::AlphaMcculloch,
        Stat::KsGauss,
        Stat::KsStable,
    ];

    /// [`Stat::CORE`] then [`Stat::FITS`].
    const CORE_FITS: [Stat; 23] = head(Stat::ALL);

    /// [`Stat::CORE`] then [`Stat::POWERLAW`]: the maps of a run with power-law maps and
    /// without the distribution fits.
    const CORE_POWERLAW: [Stat; 16] = {
        let mut out = [Stat::N; 16];
        let mut i = 0;
        while i < 16 {
            out[i] = if i < 13 {
                Stat::CORE[i]
            } else {
                Stat::POWERLAW[i - 13]
            };
            i += 1;
        }
        out
    };

    /// The maps a run writes, in column order: [`Stat::CORE`], then [`Stat::FITS`] with the
    /// fits, then [`Stat::POWERLAW`] with the per-coordinate power-law fits.
    pub const fn maps(fits: bool, powerlaw: bool) -> &'static [Stat] {
        match (fits, powerlaw) {
            (false, false) => &Stat::CORE,
            (true, false) => &Stat::CORE_FITS,
            (false, true) => &Stat::CORE_POWERLAW,
            (true, true) => &Stat::ALL,
        }
    }

    /// The list of [`Stat::maps`] with `len` columns (the four lengths differ).
    pub fn maps_of_len(len: usize) -> &'static [Stat] {
        [(false, false), (true, false), (false, true), (true, true)]
            .into_iter()
            .map(|(f, p)| Stat::maps(f, p))
            .find(|m| m.len() == len)
            .unwrap_or_else(|| panic!("no list of maps has {len} columns"))
    }

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
            Stat::AlphaMcculloch => "alpha_mcculloch",
            Stat::BetaMcculloch => "beta_mcculloch",
            Stat::ScaleMcculloch => "scale_mcculloch",
            Stat::LocMcculloch => "loc_mcculloch",
            Stat::Ad => "ad",
            Stat::AdP => "ad_p",
            Stat::KsGauss => "ks_gauss",
            Stat::KsStable => "ks_stable",
            Stat::Top1Share => "top1_share",
            Stat::VarRatio => "var_ratio",
            Stat::AlphaPl => "alpha_pl",
            Stat::XminPl => "xmin_pl",
            Stat::KsPl => "ks_pl",
        }
    }

    pub const fn unit(self) -> &'static str {
        match self {
            Stat::N | Stat::Nonfinite => "samples",
            Stat::Mean | Stat::ScaleLogm | Stat::ScaleMcculloch | Stat::LocMcculloch => {
                "data units"
            }
            Stat::Var => "data units²",
            Stat::JbP | Stat::K2P | Stat::AdP => "p-value",
            Stat::AlphaLogm | Stat::AlphaBlock | Stat::AlphaMcculloch => "tail index α",
            Stat::KsGauss | Stat::KsStable | Stat::KsPl => "KS distance",
            Stat::AlphaPl => "PDF exponent",
            Stat::XminPl => "|u|, data units",
            Stat::Top1Share => "share of Σu²",
            Stat::VarRatio => "ratio",
            Stat::Skew | Stat::Kurt | Stat::Jb | Stat::K2 | Stat::BetaMcculloch | Stat::Ad => "",
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
            Stat::AlphaMcculloch => "quantile tail index (McCulloch 1986, scipy's _fitstart_S1)",
            Stat::BetaMcculloch => "McCulloch skewness β",
            Stat::ScaleMcculloch => "McCulloch scale c",
            Stat::LocMcculloch => "McCulloch location δ (S1)",
            Stat::Ad => "Anderson–Darling A² for normality (scipy.stats.anderson)",
            Stat::AdP => "Anderson–Darling p-value (D'Agostino & Stephens 1986)",
            Stat::KsGauss => "KS distance to the fitted normal",
            Stat::KsStable => "KS distance to the fitted stable law",
            Stat::Top1Share => "share of Σu² in the largest 1 % of u² (Wu et al. 2021)",
            Stat::VarRatio => "variance of all K over the first K/2 samples",
            Stat::AlphaPl => {
                "power-law PDF exponent of |u| above xmin (Clauset et al. 2009; tail index α − 1)"
            }
            Stat::XminPl => {
                "where the power-law tail of |u| starts (KS-selected, as the powerlaw package)"
            }
            Stat::KsPl => "KS distance D of the power-law fit (the powerlaw package's)",
        }
    }

    pub fn from_name(name: &str) -> Option<Stat> {
        Stat::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Position in [`Stat::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Whether it is one of [`Stat::FITS`].
    pub const fn is_fit(self) -> bool {
        self.index() >= Stat::CORE.len() && self.index() < Stat::CORE.len() + Stat::FITS.len()
    }
}

/// The first N statistics of `all`.
const fn head<const N: usize>(all: [Stat; 26]) -> [Stat; N] {
    let mut out = [Stat::N; N];
    let mut i = 0;
    while i < N {
        out[i] = all[i];
        i += 1;
    }
    out
}

/// The last N statistics of `all`.
const fn tail<const N: usize>(all: [Stat; 26]) -> [Stat; N] {
    let mut out = [Stat::N; N];
    let mut i = 0;
    while i < N {
        out[i] = all[all.len() - N + i];
        i += 1;
    }
    out
}

/// The output names of `stats`, in order.
pub const fn names<const N: usize>(stats: [Stat; N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = stats[i].name();
        i += 1;
    }
    out
}

/// The names of [`Stat::CORE`], in order: the maps every run writes.
pub const COORD_STATS: [&str; Stat::CORE.len()] = names(Stat::CORE);

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
            if i < COORD_STATS.len() {
                assert_eq!(COORD_STATS[i], s.name());
            }
            assert!(!s.meaning().is_empty());
            assert_eq!(s.is_fit(), Stat::FITS.contains(s));
        }
        assert_eq!(
            Stat::CORE.len() + Stat::FITS.len() + Stat::POWERLAW.len(),
            Stat::ALL.len()
        );
        assert_eq!(Stat::ALL[13..23], Stat::FITS);
        for (f, p) in [(false, false), (true, false), (false, true), (true, true)] {
            let m = Stat::maps(f, p);
            assert_eq!(Stat::maps_of_len(m.len()), m);
            assert_eq!(m.iter().any(|s| s.is_fit()), f);
            assert_eq!(m.contains(&Stat::KsPl), p);
            assert_eq!(&m[..13], &Stat::CORE);
        }
        assert_eq!(Stat::CORE[12], Stat::AlphaBlock);
        assert_eq!(Stat::FITS[0], Stat::AlphaMcculloch);
        // The fits' field order is theirs; the names must agree position by position.
        assert_eq!(names(Stat::FITS), crate::stats::fits::FIT_STATS);
    }
}
