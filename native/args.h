// Table-driven conversion of one native op's argument object (Node-API → C++ params), strict both ways:
// a required key that is missing, a key of the wrong type, and a key the op does not know are each a
// DTYPE error naming the op and the key. Device pointers (cuda) are bigints; host arrays (the native cpu
// backend) typed arrays of one element type. Nothing has a silent default: a misspelt key in the
// TypeScript glue (src/backends/cuda/native.ts holds one interface per op, mirroring the params
// structs) fails loudly instead of giving a plausible wrong number.
//
//   Args a(info[0], "logprobs");
//   p.rows = a.Int("rows");  p.entropy = a.OptPtr<float>("outEntropy");  ...;  a.Done();
//
// Optional keys are those whose absence has a meaning (an output not asked for, a test hook); they may
// be absent, undefined or null. Done() rejects every key that was not read.
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace gkn {

inline Napi::Error ArgError(Napi::Env env, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, "DTYPE"));
  return e;
}

class Args {
 public:
  Args(Napi::Value v, const char* op) : env_(v.Env()), op_(op) {
    if (!v.IsObject()) throw ArgError(env_, op_ + ": expected an argument object");
    o_ = v.As<Napi::Object>();
  }

  // ----------------------------------------------------------------------------------- required
  template <class T = void>
  T* Ptr(const char* key) {
    return reinterpret_cast<T*>(static_cast<uintptr_t>(PtrValue(Get(key), key)));
  }
  double Num(const char* key) { return NumValue(Get(key), key); }
  // An integer-valued number (|x| < 2^53).
  int64_t Int(const char* key) { return IntValue(Get(key), key); }
  bool Bool(const char* key) {
    Napi::Value v = Get(key);
    if (!v.IsBoolean()) throw Wrong(key, "a boolean");
    return v.As<Napi::Boolean>().Value();
  }
  std::string Str(const char* key) {
    Napi::Value v = Get(key);
    if (!v.IsString()) throw Wrong(key, "a string");
    return v.As<Napi::String>().Utf8Value();
  }
  // A string that must be one of `names`; returns its index (the C++ enum's value, in the same order).
  int Enum(const char* key, const std::vector<std::string>& names) {
    const std::string s = Str(key);
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i] == s) return static_cast<int>(i);
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "'" : ", '") + n + "'";
    throw ArgError(env_, op_ + ": " + key + ": expected one of " + list + ", got '" + s + "'");
  }
  // An integer typed array (Int32Array, Float64Array of integers, Uint8Array), copied.
  template <class T>
  std::vector<T> Vec(const char* key) {
    return VecValue<T>(Get(key), key);
  }

  // A host typed array of element type T (float: Float32Array, uint16_t: Uint16Array, int32_t:
  // Int32Array, uint8_t: Uint8Array, double: Float64Array): its data and element count. The caller keeps
  // the array alive (the native cpu backend holds a reference to the whole argument object).
  template <class T>
  T* Buf(const char* key, size_t* length = nullptr) {
    return BufValue<T>(Get(key), key, length);
  }
  // f32 (Float32Array) or f16/bf16 bits (Uint16Array) as untyped memory; `dtype` (0 f32, 1 f16, 2 bf16)
  // must match the array type.
  void* FloatBuf(const char* key, int dtype, size_t* bytes) {
    Napi::Value v = Get(key);
    void* p = FloatBufValue(v, key, bytes);
    const bool f32 = v.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array;
    if (f32 != (dtype == 0)) throw Wrong(key, dtype == 0 ? "a Float32Array for dtype f32" : "a Uint16Array of f16/bf16 bits");
    return p;
  }
  // An array of argument objects (each converted by an Args of its own: the native cpu backend's
  // mergeLogprobStates takes its states so).
  Napi::Array Objects(const char* key) {
    Napi::Value v = Get(key);
    if (!v.IsArray()) throw Wrong(key, "an array of objects");
    return v.As<Napi::Array>();
  }
  // Device pointers as a BigUint64Array (0n: none).
  std::vector<uint64_t> PtrVec(const char* key) {
    Napi::Value v = Get(key);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array)
      throw Wrong(key, "a BigUint64Array of device pointers");
    return VecValue<uint64_t>(v, key);
  }

  // ----------------------------------------------------------------------------------- optional
  template <class T = void>
  T* OptPtr(const char* key) {
    Napi::Value v = Opt(key);
    return v.IsEmpty() ? nullptr : reinterpret_cast<T*>(static_cast<uintptr_t>(PtrValue(v, key)));
  }
  template <class T>
  T* OptBuf(const char* key, size_t* length = nullptr) {
    Napi::Value v = Opt(key);
    if (v.IsEmpty()) {
      if (length) *length = 0;
      return nullptr;
    }
    return BufValue<T>(v, key, length);
  }
  bool Has(const char* key) { return !Opt(key).IsEmpty(); }
  double OptNum(const char* key, double absent) {
    Napi::Value v = Opt(key);
    return v.IsEmpty() ? absent : NumValue(v, key);
  }
  int64_t OptInt(const char* key, int64_t absent) {
    Napi::Value v = Opt(key);
    return v.IsEmpty() ? absent : IntValue(v, key);
  }
  template <class T>
  std::vector<T> OptVec(const char* key) {
    Napi::Value v = Opt(key);
    return v.IsEmpty() ? std::vector<T>{} : VecValue<T>(v, key);
  }

  // Every key of the object must have been read.
  void Done() {
    Napi::Array names = o_.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); ++i) {
      const std::string k = names.Get(i).ToString().Utf8Value();
      if (!read_.count(k)) throw ArgError(env_, op_ + ": unknown key '" + k + "'");
    }
  }

  Napi::Env Env() const { return env_; }

 private:
  Napi::Value Get(const char* key) {
    read_.insert(key);
    Napi::Value v = o_.Get(key);
    if (v.IsUndefined() || v.IsNull()) throw ArgError(env_, op_ + ": missing key '" + key + "'");
    return v;
  }
  // Empty when absent, undefined or null.
  Napi::Value Opt(const char* key) {
    read_.insert(key);
    Napi::Value v = o_.Get(key);
    return v.IsUndefined() || v.IsNull() ? Napi::Value() : v;
  }
  Napi::Error Wrong(const char* key, const char* expected) {
    return ArgError(env_, op_ + ": " + key + ": expected " + expected);
  }
  uint64_t PtrValue(Napi::Value v, const char* key) {
    if (!v.IsBigInt()) throw Wrong(key, "a bigint device pointer");
    bool lossless = true;
    const uint64_t p = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw Wrong(key, "a device pointer below 2^64");
    return p;
  }
  double NumValue(Napi::Value v, const char* key) {
    if (!v.IsNumber()) throw Wrong(key, "a number");
    return v.As<Napi::Number>().DoubleValue();
  }
  int64_t IntValue(Napi::Value v, const char* key) {
    const double d = NumValue(v, key);
    if (!(std::fabs(d) < 9007199254740992.0) || d != std::floor(d)) throw Wrong(key, "an integer");
    return static_cast<int64_t>(d);
  }
  template <class T>
  static napi_typedarray_type ArrayTypeOf();
  template <class T>
  T* BufValue(Napi::Value v, const char* key, size_t* length) {
    const napi_typedarray_type want = ArrayTypeOf<T>();
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != want) throw Wrong(key, ArrayName(want));
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    if (length) *length = ta.ElementLength();
    return reinterpret_cast<T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
  }
  void* FloatBufValue(Napi::Value v, const char* key, size_t* bytes) {
    if (!v.IsTypedArray()) throw Wrong(key, "a Float32Array or Uint16Array");
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    if (ta.TypedArrayType() != napi_float32_array && ta.TypedArrayType() != napi_uint16_array)
      throw Wrong(key, "a Float32Array or Uint16Array");
    if (bytes) *bytes = ta.ByteLength();
    return static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  }
  static const char* ArrayName(napi_typedarray_type t) {
    switch (t) {
      case napi_float32_array:
        return "a Float32Array";
      case napi_uint16_array:
        return "a Uint16Array";
      case napi_int32_array:
        return "an Int32Array";
      case napi_uint8_array:
        return "a Uint8Array";
      case napi_float64_array:
        return "a Float64Array";
      default:
        return "a typed array";
    }
  }
  template <class T>
  std::vector<T> VecValue(Napi::Value v, const char* key) {
    if (!v.IsTypedArray()) throw Wrong(key, "a typed array");
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    const size_t n = ta.ElementLength();
    std::vector<T> out(n);
    const uint8_t* base = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    switch (ta.TypedArrayType()) {
      case napi_int32_array:
        for (size_t i = 0; i < n; ++i) out[i] = static_cast<T>(reinterpret_cast<const int32_t*>(base)[i]);
        break;
      case napi_float64_array:
        for (size_t i = 0; i < n; ++i) out[i] = static_cast<T>(reinterpret_cast<const double*>(base)[i]);
        break;
      case napi_uint8_array:
        for (size_t i = 0; i < n; ++i) out[i] = static_cast<T>(base[i]);
        break;
      case napi_biguint64_array:  // device pointers (PtrVec)
        for (size_t i = 0; i < n; ++i) out[i] = static_cast<T>(reinterpret_cast<const uint64_t*>(base)[i]);
        break;
      default:
        throw Wrong(key, "an Int32Array, Float64Array, Uint8Array or BigUint64Array");
    }
    return out;
  }

  Napi::Env env_;
  std::string op_;
  Napi::Object o_;
  std::set<std::string> read_;
};

template <>
inline napi_typedarray_type Args::ArrayTypeOf<float>() { return napi_float32_array; }
template <>
inline napi_typedarray_type Args::ArrayTypeOf<uint16_t>() { return napi_uint16_array; }
template <>
inline napi_typedarray_type Args::ArrayTypeOf<int32_t>() { return napi_int32_array; }
template <>
inline napi_typedarray_type Args::ArrayTypeOf<uint8_t>() { return napi_uint8_array; }
template <>
inline napi_typedarray_type Args::ArrayTypeOf<double>() { return napi_float64_array; }

}  // namespace gkn
