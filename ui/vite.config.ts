import { defineConfig } from "vite";

// Tauri serves the built files from ui/dist; no dev server is used by `make run`.
export default defineConfig({
  clearScreen: false,
  // The Rust-written golden live frame (src/gen/live-frame.golden.bin) is read by a test as
  // an inlined asset.
  assetsInclude: ["**/*.bin"],
  build: {
    target: "safari15",
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
  },
  test: {
    environment: "node",
    include: ["src/**/*.test.ts"],
  },
});
