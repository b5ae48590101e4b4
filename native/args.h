// Table-driven conversion of one native op's argument object (Node-API → C++ params), strict both ways:
// a required key that is missing, a key of the wrong type, and a key the op does not know are each a
// DTYPE error naming the op and the key. Nothing has a silent default: a misspelt key in the
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

}  // namespace gkn
