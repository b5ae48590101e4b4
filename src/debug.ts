/**
 * Test hooks. When `poison` is set, every backend fills each output buffer with it before its
 * kernel runs (f32 outputs get the value, i32 outputs POISON_I32, u8 outputs 0xAB, f16/bf16 a NaN pattern), so
 * tests can see elements a kernel never wrote. Off (undefined) in normal use.
 * Integer outputs get POISON_I32 instead: a float poison such as -7e33 truncates to 0 in an
 * Int32Array (it is a multiple of 2^32), which is a legal value.
 */
export const POISON_I32 = -1_234_567_891;
export const debugHooks: { poison: number | undefined } = { poison: undefined };

export function setOutputPoison(value: number | undefined): void {
  debugHooks.poison = value;
}
