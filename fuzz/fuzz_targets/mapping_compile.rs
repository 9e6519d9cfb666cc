//! Mapping compilation: any text as a VRL program (as a map, a condition and a split) must
//! compile or be refused with a diagnostic, and a compiled program must run on an event or
//! fail with a runtime error — never panic, never hang (VRL has no loops or recursion).
#![no_main]

use ferry_transform::{Event, Program, Returns, Template};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let event = serde_json::json!({
        "id": "evt_1",
        "type": "order.created",
        "total": 4200,
        "customer": {"id": "cus_1", "email": "a@example.com"},
        "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}],
    });
    let mut vrl_event = Event::new(event.clone());
    if let Ok(program) = Program::compile(source) {
        let _ = program.run(event.clone());
    }
    if let Ok(program) = Program::compile_returning(source, Returns::Boolean) {
        let _ = program.condition(&mut vrl_event);
    }
    if let Ok(program) = Program::compile_returning(source, Returns::Array) {
        let _ = program.elements(&mut vrl_event);
    }
    if let Ok(template) = Template::compile(source) {
        let _ = template.render(&serde_json::json!({ "event": event }));
    }
});
