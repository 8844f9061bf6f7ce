// A small corpus for the demo page: short facts on unrelated topics, so a
// query's best match is clear.
export const CORPUS = [
  "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar and oxygen.",
  "Knead the dough for ten minutes, let it rise for an hour, then bake the bread at 220 °C.",
  "The Eiffel Tower was finished in 1889 for the World's Fair in Paris.",
  "A transformer encoder turns each token into a vector by attending to every other token.",
  "Regular exercise lowers blood pressure and improves sleep.",
  "The stock market fell sharply after the central bank raised interest rates.",
  "Jupiter is the largest planet in the solar system, with at least 95 moons.",
  "To reset your password, open the settings page and choose 'Forgot password'.",
  "Coffee beans are the roasted seeds of the Coffea plant's cherries.",
  "The Great Barrier Reef is the world's largest coral reef system, off Australia.",
  "Rust's borrow checker prevents data races at compile time.",
  "A good night's sleep helps memory consolidation.",
  "Penguins cannot fly, but they are excellent swimmers.",
  "The violin has four strings tuned in perfect fifths.",
  "Volcanoes erupt when magma rises through cracks in the Earth's crust.",
  "Electric cars are charged from the grid and have no tailpipe emissions.",
  "Mount Everest, at 8,849 metres, is the highest mountain above sea level.",
  "Tomatoes grow best in full sun with regular watering.",
  "The French Revolution began in 1789 with the storming of the Bastille.",
  "Vaccines train the immune system to recognise a pathogen.",
];
