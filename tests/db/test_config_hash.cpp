#include <catch2/catch.hpp>
#include <random>
#include <string>

#include "db/results_db.h"

using mlsim::db::config_hash;
using mlsim::db::config_hash_portable;

TEST_CASE("config_hash is the SHA-256 of the text, matching the FIPS 180-4 test vectors", "[db][hash]") {
    CHECK(config_hash("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(config_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(config_hash("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(config_hash(std::string(1'000'000, 'a')) ==
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("config_hash pads correctly at every block boundary", "[db][hash]") {
    // Lengths where the length field just fits, just does not fit, and fills whole blocks.
    CHECK(config_hash(std::string(55, 'a')) ==
          "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    CHECK(config_hash(std::string(56, 'a')) ==
          "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
    CHECK(config_hash(std::string(63, 'a')) ==
          "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34");
    CHECK(config_hash(std::string(64, 'a')) ==
          "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
    CHECK(config_hash(std::string(119, 'a')) ==
          "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb");
    CHECK(config_hash(std::string(120, 'a')) ==
          "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c");
}

TEST_CASE("config_hash hashes bytes, so non-ASCII text and single-character edits change it", "[db][hash]") {
    CHECK(config_hash("\xc2\xb5-arch: \xc3\xa9\n") ==
          "fdfa154669f3da027bcb95810a53312fcfbbfa4142f61c0c3bcb0a333be3360f");
    CHECK(config_hash("batch: 8\n") != config_hash("batch: 9\n"));
    CHECK(config_hash("batch: 8\n") == config_hash("batch: 8\n"));
}

TEST_CASE("config_hash gives the portable rounds' digest whichever rounds the processor runs", "[db][hash]") {
    // Every length over four blocks (each tail case, each block count), random bytes, and one long text.
    std::mt19937 rng(5);
    for (size_t n = 0; n <= 300; ++n) {
        std::string text(n, '\0');
        for (char& c : text) c = static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng));
        INFO("length " << n);
        CHECK(config_hash(text) == config_hash_portable(text));
    }
    const std::string long_text(100'003, 'q');
    CHECK(config_hash(long_text) == config_hash_portable(long_text));
    CHECK(config_hash_portable("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
