/**
 * Test hooks. When `poison` is set, every backend fills each output buffer with it before its
 * kernel runs (f32 outputs get the value, integer outputs its truncation, u8 outputs 0xAB), so
 * tests can see elements a kernel never wrote. Off (undefined) in normal use.
 */
export const debugHooks: { poison: number | undefined } = { poison: undefined };

export function setOutputPoison(value: number | undefined): void {
  debugHooks.poison = value;
}
