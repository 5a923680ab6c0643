//! A ServiceHost plugin in Rust: reads its config, logs, loops, and panics on
//! purpose when `[config] panic_at` says so (the host logs the panic and
//! restarts the service; the panic never reaches the host).
use servicehost_plugin::{export_plugin, Context, Error, Loop, Plugin};

struct Hello {
    who: String,
    times: i64,
}

impl Plugin for Hello {
    fn create(context: &Context) -> Result<Self, Error> {
        Ok(Hello { who: context.config("who").unwrap_or_else(|| "world".into()), times: 0 })
    }

    fn run(&mut self, context: &Context) -> Result<Loop, Error> {
        self.times += 1;
        if context.config_int("panic_at")? == Some(self.times) {
            panic!("panic_at {} reached", self.times);
        }
        context.info(&format!("Hello, {}! ({})", self.who, self.times));
        Ok(if self.times < context.config_int("times")?.unwrap_or(3) { Loop::Continue } else { Loop::Done })
    }
}

export_plugin!(Hello, "1.0.0");
