#pragma once
// Internal to the zoo: a small builder that threads tensors from op to op so that model definitions
// read like the papers' layer tables. Not part of the public API.
// Contract: every tensor handle either names an op output or is a model input with a known shape;
// op() builds the op from the handles' shapes (make_op) and wires its inputs (ModelBuilder::add).
#include <string>
#include <utility>
#include <vector>

#include "workloads/model.h"

namespace mlsim::wl::zoo {

struct T {
    std::optional<TensorRef> ref;  // nullopt: a model input
    Shape shape;
};

class Net {
  public:
    Net(std::string name, DType dtype) : m_b(std::move(name)), m_dtype(dtype) {}

    static T input(Shape s) { return T{std::nullopt, std::move(s)}; }

    T op(std::string name, OpAttr attr, const std::vector<T>& ins) {
        std::vector<Shape> shapes;
        std::vector<std::optional<TensorRef>> srcs;
        for (const T& t : ins) {
            shapes.push_back(t.shape);
            srcs.push_back(t.ref);
        }
        Op o = make_op(std::move(name), std::move(attr), std::move(shapes), m_dtype);
        Shape out = o.output();
        const size_t id = m_b.add(std::move(o), srcs);
        return T{TensorRef{id, 0}, std::move(out)};
    }

    T linear(std::string name, const T& x, int64_t out, bool bias = true) {
        return op(std::move(name), LinearAttr{0, out, bias}, {x});
    }
    T conv2d(std::string name, const T& x, int64_t cout, int64_t k, int64_t stride, int64_t pad,
             int64_t groups = 1, bool bias = false) {
        ConvAttr a;
        a.out_channels = cout;
        a.kernel = {k, k, 1};
        a.stride = {stride, stride, 1};
        a.pad_begin = {pad, pad, 0};
        a.pad_end = {pad, pad, 0};
        a.groups = groups;
        a.bias = bias;
        return op(std::move(name), a, {x});
    }
    T eltwise(std::string name, Eltwise fn, const std::vector<T>& ins) {
        return op(std::move(name), EltwiseAttr{fn}, ins);
    }
    T act(std::string name, Eltwise fn, const T& x) { return eltwise(std::move(name), fn, {x}); }
    T add(std::string name, const T& a, const T& b) { return eltwise(std::move(name), Eltwise::add, {a, b}); }
    T norm(std::string name, NormType type, const T& x) {
        return op(std::move(name), NormAttr{type, 0}, {x});
    }
    T pool2d(std::string name, PoolType type, const T& x, int64_t k, int64_t stride, int64_t pad) {
        PoolAttr a;
        a.type = type;
        a.kernel = {k, k, 1};
        a.stride = {stride, stride, 1};
        a.padding = {pad, pad, 0};
        return op(std::move(name), a, {x});
    }
    T global_avgpool(std::string name, const T& x) {
        PoolAttr a;
        a.type = PoolType::avg;
        a.global = true;
        return op(std::move(name), a, {x});
    }
    T flatten(std::string name, const T& x) { return op(std::move(name), ReshapeAttr{{}, true}, {x}); }
    T embedding(std::string name, const T& ids, int64_t rows, int64_t dim, bool bag = false) {
        return op(std::move(name), EmbeddingAttr{rows, dim, bag, false, std::nullopt}, {ids});
    }

    Op& last() { return m_b.op(m_b.size() - 1); }
    DType dtype() const { return m_dtype; }
    Model build() && { return std::move(m_b).build(); }

  private:
    ModelBuilder m_b;
    DType m_dtype;
};

}  // namespace mlsim::wl::zoo
