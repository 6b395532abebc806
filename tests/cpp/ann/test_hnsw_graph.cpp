// recserve::ann::HnswGraph's level-0 in-links, below the Index: a node nobody links to is
// invisible to every search, so ensure_in_links must give it one without orphaning another.
//
// Graphs are built single-threaded from seeded std::mt19937 draws, with small lists (M = 4,
// eight level-0 links) so that lists fill and a new link has to displace an old one.
#include "recserve/ann/hnsw_graph.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "recserve/ann/vector_storage.hpp"
#include "recserve/simd/kernel_table.hpp"

namespace recserve::ann {
namespace {

using Graph = HnswGraph<F32Storage>;
constexpr std::size_t kDims = 8;

std::unique_ptr<Graph> build_graph(std::size_t n, std::uint32_t seed) {
    auto kernels = simd::active_kernels();
    EXPECT_TRUE(kernels.is_ok());
    auto g = std::make_unique<Graph>(4, 32, kDims, Metric::kL2, *kernels.value());
    EXPECT_TRUE(g->reserve(n));
    std::mt19937 rng(seed);
    std::normal_distribution<float> unit(0.0f, 1.0f);
    SearchScratch scratch;
    std::vector<float> v(kDims), prepared(kDims);
    for (std::size_t i = 0; i < n; ++i) {
        for (float& x : v) x = unit(rng);
        const std::uint32_t s = g->take_slot();
        g->storage().store(s, v.data());
        g->init_node(s, i, 0);
        g->set_state(s, SlotState::kLive);
        g->insert(s, g->storage().prepare(v.data(), prepared.data()), scratch);
    }
    // As Index::add does after a batch: the new nodes and those its prunes dropped.
    std::vector<std::uint32_t> nodes = scratch.unlinked;
    for (std::uint32_t s = 0; s < n; ++s) nodes.push_back(s);
    g->ensure_in_links(nodes, scratch);
    return g;
}

std::vector<std::uint32_t> links_of(const Graph& g, std::uint32_t s) {
    std::vector<std::uint32_t> out(2 * Graph::kMaxM);
    out.resize(g.read_links(s, 0, out.data()));
    return out;
}

std::vector<int> in_degrees(const Graph& g) {
    std::vector<int> in(g.slot_count(), 0);
    for (std::uint32_t s = 0; s < g.slot_count(); ++s)
        for (std::uint32_t t : links_of(g, s)) ++in[t];
    return in;
}

// Removes every level-0 link that points at x.
void orphan(Graph& g, std::uint32_t x) {
    for (std::uint32_t s = 0; s < g.slot_count(); ++s) {
        std::vector<std::uint32_t> kept;
        for (std::uint32_t t : links_of(g, s))
            if (t != x) kept.push_back(t);
        g.write_links(s, 0, kept.data(), kept.size());
    }
}

TEST(HnswGraphInLinks, OrphanedNodeGetsAnInLinkAndNoOtherNodeLosesItsLast) {
    auto g = build_graph(600, 1);
    for (int d : in_degrees(*g)) ASSERT_GT(d, 0);  // a built graph has no orphan to begin with
    for (const std::uint32_t x : {7u, 123u, 599u}) {
        SCOPED_TRACE("slot " + std::to_string(x));
        orphan(*g, x);
        ASSERT_EQ(in_degrees(*g)[x], 0);
        std::vector<std::uint32_t> nodes{x};
        SearchScratch scratch;
        EXPECT_EQ(g->ensure_in_links(nodes, scratch), 1u);
        const std::vector<int> in = in_degrees(*g);
        for (std::uint32_t s = 0; s < g->slot_count(); ++s) EXPECT_GT(in[s], 0) << "slot " << s;
    }
}

TEST(HnswGraphInLinks, NodesWithAnInLinkAreLeftAlone) {
    auto g = build_graph(300, 2);  // every node has an in-link already
    std::vector<std::vector<std::uint32_t>> before;
    std::vector<std::uint32_t> nodes;
    for (std::uint32_t s = 0; s < g->slot_count(); ++s) {
        before.push_back(links_of(*g, s));
        nodes.push_back(s);
    }
    SearchScratch scratch;
    EXPECT_EQ(g->ensure_in_links(nodes, scratch), 0u);
    for (std::uint32_t s = 0; s < g->slot_count(); ++s) EXPECT_EQ(links_of(*g, s), before[s]) << "slot " << s;
}

TEST(HnswGraphInLinks, RepairRelinksANodeOnlyADeletedNodeLinkedTo) {
    auto g = build_graph(400, 4);
    const std::uint32_t x = 42;
    orphan(*g, x);
    // Its only in-link comes from a neighbour that nobody links to, which is then deleted:
    // no live node's list names the dead one, so none inherits its links.
    const std::uint32_t d = links_of(*g, x).front();
    orphan(*g, d);
    std::vector<std::uint32_t> list = links_of(*g, d);
    list.back() = x;
    g->write_links(d, 0, list.data(), list.size());
    g->set_state(d, SlotState::kDeleted);
    SearchScratch scratch;
    EXPECT_EQ(g->repair(scratch), 1u);
    const std::vector<int> in = in_degrees(*g);
    for (std::uint32_t s = 0; s < g->slot_count(); ++s) {
        if (g->state(s) == SlotState::kLive) {
            EXPECT_GT(in[s], 0) << "slot " << s;
        }
    }
}

TEST(HnswGraphInLinks, DeletedNodesAreSkipped) {
    auto g = build_graph(200, 3);
    orphan(*g, 5);
    g->set_state(5, SlotState::kDeleted);
    std::vector<std::uint32_t> nodes{5};
    SearchScratch scratch;
    EXPECT_EQ(g->ensure_in_links(nodes, scratch), 0u);
    EXPECT_EQ(in_degrees(*g)[5], 0);
    EXPECT_TRUE(nodes.empty());
}

}  // namespace
}  // namespace recserve::ann
