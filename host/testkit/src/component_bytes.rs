//! Components rewritten for tests of what loading one costs the host: larger, or with
//! bytes never seen (which the compile cache misses).

use wasm_encoder::{
    CodeSection, Function, FunctionSection, Instruction, Module, TypeSection, ValType,
};

/// `component` with one more core module, of `functions` functions, that nothing
/// instantiates: the same plugin, as slow to compile as one carrying an interpreter
/// (Python and JavaScript plugins do), since every module of a component is compiled.
pub fn padded(component: &[u8], functions: u32) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    let mut declared = FunctionSection::new();
    let mut code = CodeSection::new();
    for i in 0..functions {
        declared.function(0);
        code.function(&busy_function(i));
    }
    let mut module = Module::new();
    module.section(&types).section(&declared).section(&code);
    let module = module.finish();
    // A component's core module section (id 1).
    with_section(component, 1, &module)
}

/// `component` with a custom section holding `tag`: the same code, bytes never seen
/// (for another `tag`), so the compile cache misses and it is compiled.
pub fn unseen(component: &[u8], tag: &str) -> Vec<u8> {
    let name = b"synchro-test";
    let mut body = vec![name.len() as u8];
    body.extend_from_slice(name);
    body.extend_from_slice(tag.as_bytes());
    with_section(component, 0, &body)
}

/// `component` with one more section, `id` (its size written before `body`).
fn with_section(component: &[u8], id: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = component.to_vec();
    bytes.push(id);
    leb128(&mut bytes, body.len() as u64);
    bytes.extend_from_slice(body);
    bytes
}

/// A function with a loop over a few locals: work for the register allocator.
fn busy_function(seed: u32) -> Function {
    use Instruction as I;
    let mut f = Function::new([(4, ValType::I32)]);
    f.instruction(&I::Loop(wasm_encoder::BlockType::Empty));
    for step in 0..24u32 {
        let local = 1 + step % 4;
        f.instruction(&I::LocalGet(0))
            .instruction(&I::LocalGet(local))
            .instruction(&I::I32Const((seed ^ step) as i32))
            .instruction(&I::I32Mul)
            .instruction(&I::I32Add)
            .instruction(&I::LocalSet(1 + (step + 1) % 4));
    }
    f.instruction(&I::LocalGet(0))
        .instruction(&I::I32Const(1))
        .instruction(&I::I32Sub)
        .instruction(&I::LocalTee(0))
        .instruction(&I::BrIf(0))
        .instruction(&I::End);
    f.instruction(&I::LocalGet(1)).instruction(&I::End);
    f
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
