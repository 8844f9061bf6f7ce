//! One module per subcommand.

pub mod convert;
pub mod list;
pub mod pull;

use indicatif::{ProgressBar, ProgressStyle};

/// A byte-progress bar on stderr (hidden when stderr is not a terminal).
pub fn bytes_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("static template is valid")
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}
