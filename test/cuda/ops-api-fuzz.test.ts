/**
 * The API fuzz table (test/cases/api-fuzz.ts) on cuda: a GPU, or the CUDA emulator in the cuda-emu
 * project (without either the cuda cases skip, saying why). Its first run there found host offsets in
 * a SharedArrayBuffer refused by the addon ("cuda Invalid argument"); src/layout.ts now copies them.
 */
import { apiFuzz } from '../cases/api-fuzz.js';

await apiFuzz(['cuda']);
