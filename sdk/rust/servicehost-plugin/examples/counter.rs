//! A ServiceHost plugin in Rust that keeps its count across restarts and
//! reloads: read back in `create`, saved as a checkpoint on every loop.
use servicehost_plugin::{export_plugin, Context, Error, Loop, Plugin};

/// Format 1 of what is kept: the byte 1, then the count in 8 little-endian bytes.
const FORMAT: u8 = 1;

struct Counter {
    count: u64,
}

impl Plugin for Counter {
    fn create(context: &Context) -> Result<Self, Error> {
        let count = match context.kept_state() {
            Some(kept) if kept.len() == 9 && kept[0] == FORMAT => u64::from_le_bytes(kept[1..].try_into().unwrap()),
            _ => 0, // nothing kept, or a format unknown here: start afresh
        };
        context.info(&format!("starting at {}", count));
        Ok(Counter { count })
    }

    fn run(&mut self, context: &Context) -> Result<Loop, Error> {
        self.count += 1;
        let mut kept = vec![FORMAT];
        kept.extend_from_slice(&self.count.to_le_bytes());
        context.save_state(&kept)?;
        Ok(Loop::Continue)
    }
}

export_plugin!(Counter, "1.0.0");
